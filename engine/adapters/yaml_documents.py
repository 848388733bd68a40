"""Loads YAML files into pydantic models, reporting every problem with its file, line and field.

ruamel.yaml keeps the line of each key and item, so a validation error's location (a path of keys and indices)
can be pointed back to the line an author has to fix.

Documents are bounded before they can cost much: a file over ``MAX_DOCUMENT_BYTES`` is not parsed, and a
document is refused once it holds more than ``MAX_NODES`` values or nests deeper than ``MAX_DEPTH``, counting
every use of an anchor (``*alias``) as the copy it stands for, so an alias bomb is refused after a few thousand
steps instead of expanding into billions of values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent
from ruamel.yaml.parser import RoundTripParser

from engine.domain.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 64

# A problem a caller finds in a valid model: where it is (keys and indices) and what is wrong.
Finding = tuple[tuple[int | str, ...], str]


@dataclass(frozen=True)
class DocumentProblem:
    path: Path
    line: int | None
    field: str
    message: str

    @property
    def location(self) -> str:
        """``file:line: field`` (without what is unknown)."""
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.field}" if self.field else where

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidDocumentError(ConfigurationError):
    """A YAML document that does not parse or does not validate; ``problems`` lists every issue found."""

    def __init__(self, problems: list[DocumentProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class _BoundedParser(RoundTripParser):
    """ruamel's parser, stopped once a document holds more than ``MAX_NODES`` events or nests deeper than
    ``MAX_DEPTH``: parsing costs about the same per event, so this bounds the time a file can take."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._events = 0
        self._depth = 0

    def get_event(self) -> Any:
        event = super().get_event()
        self._events += 1
        if isinstance(event, CollectionStartEvent):
            self._depth += 1
        elif isinstance(event, CollectionEndEvent):
            self._depth -= 1
        if self._events > MAX_NODES:
            raise MarkedYAMLError(problem=f"more than {MAX_NODES} values", problem_mark=event.start_mark)
        if self._depth > MAX_DEPTH:
            raise MarkedYAMLError(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark)
        return event


class _TooLargeError(Exception):
    def __init__(self, location: tuple[int | str, ...], reason: str) -> None:
        super().__init__(reason)
        self.location = location
        self.reason = reason


class _Plain:
    """ruamel's annotated containers as plain dicts and lists, so validation sees ordinary Python values; every
    value counts against ``MAX_NODES``, an aliased one each time it is used."""

    def __init__(self) -> None:
        self.nodes = 0

    def convert(self, node: Any, location: tuple[int | str, ...] = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLargeError(location, f"more than {MAX_NODES} values (aliases count once per use)")
        if len(location) > MAX_DEPTH:
            raise _TooLargeError(location, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            return {str(key): self.convert(value, (*location, str(key))) for key, value in node.items()}
        if isinstance(node, list):
            return [self.convert(item, (*location, index)) for index, item in enumerate(node)]
        return node


def _line_of(root: Any, location: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest part of ``location`` that exists in the document."""
    node, line = root, None
    for part in location:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(root, CommentedMap | CommentedSeq):
        line = root.lc.line + 1
    return line


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            # One byte more than the limit tells a file at the limit from one over it, without reading the rest.
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidDocumentError([DocumentProblem(path, None, "", f"larger than {MAX_DOCUMENT_BYTES} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidDocumentError([DocumentProblem(path, line, "", "not valid UTF-8")]) from exc


def read_yaml(path: Path) -> Any:
    """Parse ``path``; raises InvalidDocumentError naming the line of a syntax error."""
    text = _read_text(path)
    yaml = YAML(typ="rt")
    yaml.Parser = _BoundedParser
    try:
        return yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidDocumentError([DocumentProblem(path, line, "", f"not valid YAML: {problem}")]) from exc
    except RecursionError as exc:
        raise InvalidDocumentError([DocumentProblem(path, None, "", "not valid YAML: nested too deeply")]) from exc


def load_model(path: Path, model: type[M], check: Callable[[M], Sequence[Finding]] | None = None) -> M:
    """Parse and validate ``path`` as ``model``; ``check`` may find further problems in the valid model, which
    are reported with their lines like validation errors."""
    loaded, _ = load_model_with_warnings(path, model, check)
    return loaded


def load_model_with_warnings(
    path: Path,
    model: type[M],
    check: Callable[[M], Sequence[Finding]] | None = None,
    warn: Callable[[M], Sequence[Finding]] | None = None,
) -> tuple[M, list[DocumentProblem]]:
    """As ``load_model``; ``warn`` finds what is worth telling the author but does not make the file invalid,
    returned with the lines as the second item."""
    document = read_yaml(path)
    try:
        plain = _Plain().convert(document)
    except _TooLargeError as exc:
        field = ".".join(str(part) for part in exc.location)
        raise InvalidDocumentError(
            [DocumentProblem(path, _line_of(document, exc.location), field, exc.reason)]
        ) from exc
    try:
        loaded = model.model_validate(plain)
    except ValidationError as exc:
        problems = [
            DocumentProblem(
                path,
                _line_of(document, tuple(error["loc"])),
                ".".join(str(part) for part in error["loc"]),
                _message(error),
            )
            for error in exc.errors()
        ]
        raise InvalidDocumentError(problems) from exc
    findings = check(loaded) if check is not None else ()
    if findings:
        raise InvalidDocumentError(_located(path, document, findings))
    return loaded, _located(path, document, warn(loaded) if warn is not None else ())


def _located(path: Path, document: Any, findings: Sequence[Finding]) -> list[DocumentProblem]:
    return [
        DocumentProblem(path, _line_of(document, location), ".".join(str(part) for part in location), message)
        for location, message in findings
    ]


def _message(error: Any) -> str:
    message = str(error["msg"])
    expected = error.get("ctx", {}).get("expected")
    if expected and "expected" not in message.lower() and str(expected) not in message:
        message += f" (allowed: {expected})"
    return message
