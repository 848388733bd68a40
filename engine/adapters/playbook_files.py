"""Loads the playbook directory: every ``*.yaml`` file holds one playbook, except ``_policy.yaml``, which holds
the rules for all of them (global allowlist, blast-radius limits). The directory is validated as a whole, so one
bad file rejects the set and the caller keeps whatever set it had before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.adapters.yaml_documents import DocumentProblem, InvalidDocumentError, load_model
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.domain.errors import ConfigurationError

POLICY_FILE = "_policy.yaml"


@dataclass(frozen=True)
class PlaybookSet:
    playbooks: tuple[Playbook, ...]
    policy: Policy


def playbook_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigurationError(f"playbook directory {directory} does not exist or is not a directory")
    files = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted(path for path in files if not path.name.startswith("_"))


def load_playbook_set(directory: Path) -> PlaybookSet:
    """Playbooks and policy of ``directory``; InvalidDocumentError listing all problems if any file is invalid."""
    problems: list[DocumentProblem] = []
    policy = Policy()
    try:
        playbooks = load_playbooks(directory)
    except InvalidDocumentError as exc:
        problems.extend(exc.problems)
        playbooks = []
    if (directory / POLICY_FILE).is_file():
        try:
            policy = load_model(directory / POLICY_FILE, Policy)
        except InvalidDocumentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidDocumentError(problems)
    return PlaybookSet(tuple(playbooks), policy)


def load_playbooks(directory: Path) -> list[Playbook]:
    """Every playbook in ``directory``; InvalidDocumentError listing all problems if any file is invalid."""
    problems: list[DocumentProblem] = []
    playbooks: list[Playbook] = []
    seen: dict[str, Path] = {}
    for path in playbook_files(directory):
        try:
            playbook = load_model(path, Playbook)
        except InvalidDocumentError as exc:
            problems.extend(exc.problems)
            continue
        if playbook.name in seen:
            problems.append(
                DocumentProblem(path, None, "name", f"{playbook.name!r} is also used by {seen[playbook.name]}")
            )
            continue
        seen[playbook.name] = path
        playbooks.append(playbook)
    if problems:
        raise InvalidDocumentError(problems)
    return playbooks
