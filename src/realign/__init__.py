"""trace-realign: re-align a language model to a changed policy with TRACE (arXiv 2511.02623).

Stages, each named once (command, module or package, config section, run folder):
:mod:`realign.triage` (Alg. 1 lines 3-6), :mod:`realign.score` (impact scores, Alg. 1 lines
9-31), :mod:`realign.train` (hybrid training, Alg. 1 lines 34-46), :mod:`realign.evaluate` and
:mod:`realign.report`; the judges in :mod:`realign.judges`.
"""

import logging as _logging

__version__ = "0.1.0"


def _drop_deepspeed_autodetect_notice() -> None:
    """DeepSpeed, when installed, is imported by accelerate and transformers even when nobody
    configured it, and on a machine without a GPU it then logs "Setting accelerator to CPU ..."
    on *stdout* (its own handler), which corrupts output meant to be captured
    (``BASE=$(realign models prepare smollm2)``). A filter on its logger, which DeepSpeed's own
    set-up keeps, drops just that notice; everything else DeepSpeed logs when it is really used
    still shows."""

    def keep(record: _logging.LogRecord) -> bool:
        return "we were unable to detect it" not in str(record.msg)

    _logging.getLogger("DeepSpeed").addFilter(keep)


_drop_deepspeed_autodetect_notice()
