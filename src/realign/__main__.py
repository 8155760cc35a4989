"""``python -m realign`` is the ``realign`` command."""

from .cli import main

main()
