"""Reading what a user writes: a text file with every problem one error naming the file, YAML
read strictly (a key given twice, an alias bomb and a self-referring alias refused, every error
located at its line), and the data validated into a model with its first problem one error
naming field and file. The configs (:mod:`realign.config`), policies (:mod:`realign.policy`),
attack templates and label files are read through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RealignError, shorten

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], raw: dict[str, Any], source: str) -> M:
    """Validate ``raw`` into ``model``; the first problem becomes one error naming field and file."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = f" (got {shorten(got)})" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) else ""
        raise RealignError(f"{source}: field '{loc}': {msg}{shown}") from None


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping: plain YAML keeps the
    last silently (two ``requirements:`` lose the first list). The error is a YAML error
    located at the second key, like every other YAML error."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: YAML merge rules
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first on line {first}): the last one would silently win; keep one",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


#: most nodes a YAML document may hold once its aliases are expanded, beyond the ones written
#: in it: aliases (``*base``) reuse a value, but nested ones multiply (a 449-byte "billion
#: laughs" file expands to gigabytes in whatever walks the data next)
ALIAS_EXPANSION_LIMIT = 10_000


def _check_alias_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it by more than :data:`ALIAS_EXPANSION_LIMIT`
    nodes, or that refers to itself (``&a [*a]``); linear in the written document."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    written: set[int] = set()
    first_alias: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            if not first_alias:
                first_alias.append(node)
            return sizes[key]
        if key in open_:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to the value that contains it (a recursive structure)", node.start_mark
            )
        written.add(key)
        open_.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > ALIAS_EXPANSION_LIMIT + len(written):
                break
        open_.discard(key)
        sizes[key] = total
        return total

    total = size(root)
    if total > ALIAS_EXPANSION_LIMIT + len(written):
        mark = first_alias[0].start_mark if first_alias else None
        raise yaml.constructor.ConstructorError(
            None, None,
            f"aliases expand this document beyond {ALIAS_EXPANSION_LIMIT:,} values more than it holds "
            f"({len(written):,} written); refused (an alias bomb?)",
            mark,
        )


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of one YAML document and its node tree (which knows every value's line), read
    with :class:`StrictLoader`. Aliases may not expand the document by more than
    :data:`ALIAS_EXPANSION_LIMIT` values. Raises ``yaml.YAMLError``."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_alias_expansion(node)
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def yaml_error(path: str | Path, exc: yaml.YAMLError) -> RealignError:
    """A YAML error as one line: ``FILE:LINE: invalid YAML: PROBLEM``."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return RealignError(f"{path}{where}: invalid YAML: {problem}")


def read_text(path: str | Path, what: str = "file") -> str:
    """A text file's content; a missing file, a directory, unreadable bytes or invalid UTF-8
    is one :class:`RealignError` naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RealignError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise RealignError(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise RealignError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RealignError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_yaml(path: str | Path, what: str = "file") -> tuple[Any, yaml.Node | None]:
    """:func:`parse_yaml` of a file, every problem one :class:`RealignError` naming the file
    (and the line where YAML knows it)."""
    text = read_text(path, what)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    except RecursionError:
        raise RealignError(f"{path}: invalid YAML: nested too deeply") from None
