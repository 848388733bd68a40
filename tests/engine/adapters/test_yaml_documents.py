"""Hostile YAML: size, aliases and nesting are refused quickly, with the file, line and field."""

import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from engine.adapters.yaml_documents import MAX_DEPTH, MAX_DOCUMENT_BYTES, InvalidDocumentError, load_model


class Anything(BaseModel):
    model_config = {"extra": "allow"}


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(9))
    started = time.monotonic()
    with pytest.raises(InvalidDocumentError) as raised:
        load_model(path, Anything)
    assert time.monotonic() - started < 5.0
    [problem] = raised.value.problems
    assert problem.path == path
    assert problem.field.startswith("a")
    assert problem.line is not None


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &base {cooldown: 5m}\nfirst: *base\nsecond: *base\n")
    assert load_model(path, Anything).model_dump()["second"] == {"cooldown": "5m"}


def test_a_file_over_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("x: " + "a" * MAX_DOCUMENT_BYTES + "\n")
    with pytest.raises(InvalidDocumentError) as raised:
        load_model(path, Anything)
    [problem] = raised.value.problems
    assert (problem.path, problem.line, problem.field) == (path, None, "")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x: " + "[" * 5000 + "]" * 5000 + "\n", id="beyond-the-parser"),
        pytest.param("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", id="beyond-the-limit"),
    ],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(InvalidDocumentError) as raised:
        load_model(path, Anything)
    assert raised.value.problems[0].path == path


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(InvalidDocumentError) as raised:
        load_model(path, Anything)
    assert raised.value.problems[0].line == 2
