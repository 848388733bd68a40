"""Loads YAML files into pydantic models, reporting every problem with its file, line and field.

ruamel.yaml keeps the line of each key and item, so a validation error's location (a path of keys and indices)
can be pointed back to the line an author has to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from engine.domain.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DocumentProblem:
    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InvalidDocumentError(ConfigurationError):
    """A YAML document that does not parse or does not validate; ``problems`` lists every issue found."""

    def __init__(self, problems: list[DocumentProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


def _plain(node: Any) -> Any:
    """ruamel's annotated containers as plain dicts and lists, so validation sees ordinary Python values."""
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
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


def read_yaml(path: Path) -> Any:
    """Parse ``path``; raises InvalidDocumentError naming the line of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidDocumentError([DocumentProblem(path, line, "", f"not valid YAML: {problem}")]) from exc


def load_model(path: Path, model: type[M]) -> M:
    """Parse and validate ``path`` as ``model``."""
    document = read_yaml(path)
    try:
        return model.model_validate(_plain(document))
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


def _message(error: Any) -> str:
    message = str(error["msg"])
    expected = error.get("ctx", {}).get("expected")
    if expected and "expected" not in message.lower():
        message += f" (allowed: {expected})"
    return message
