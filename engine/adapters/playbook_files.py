"""Loads the playbook directory: every ``*.yaml`` file holds one playbook, except ``_policy.yaml``, which holds
the rules for all of them (global allowlist, blast-radius limits), and ``_correlation.yaml``, which says which
signals belong to one incident (``engine.core.correlation``). The directory is validated as a whole, so one
bad file rejects the set and the caller keeps whatever set it had before.

A file may be a symbolic link (a Kubernetes ConfigMap mounts every file as one) only to a file inside the
directory: a link elsewhere is refused, so that write access to the directory does not mean read access to the
rest of the machine. A step whose namespace is written literally and is not in an allowlist is refused too: it
could never run. A template or condition that reads an incident label not every trigger requires is a warning
(``engine.core.playbooks.label_references``): the set is valid, and the warning is shown where problems are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from engine.adapters.yaml_documents import DocumentProblem, InvalidDocumentError, load_model, load_model_with_warnings
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.playbooks.guards import Allow, Policy
from engine.core.playbooks.label_references import unguaranteed_reads
from engine.core.playbooks.model import Playbook
from engine.domain.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)
POLICY_FILE = "_policy.yaml"
CORRELATION_FILE = "_correlation.yaml"


@dataclass(frozen=True)
class PlaybookSet:
    playbooks: tuple[Playbook, ...]
    policy: Policy
    correlation: CorrelationRules = NO_RULES
    # What the authors should hear of though the set is valid (file, line and field as for problems).
    warnings: tuple[DocumentProblem, ...] = ()


def playbook_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigurationError(f"playbook directory {directory} does not exist or is not a directory")
    files = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted(path for path in files if not path.name.startswith("_"))


def load_playbook_set(directory: Path) -> PlaybookSet:
    """Playbooks and policy of ``directory``; InvalidDocumentError listing all problems if any file is invalid."""
    problems: list[DocumentProblem] = []
    policy = _rules_file(directory / POLICY_FILE, Policy, problems) or Policy()
    correlation = _rules_file(directory / CORRELATION_FILE, CorrelationRules, problems) or NO_RULES
    try:
        playbooks, warnings = load_playbooks(directory, policy.allow)
    except InvalidDocumentError as exc:
        problems.extend(exc.problems)
        playbooks, warnings = [], []
    if problems:
        raise InvalidDocumentError(problems)
    return PlaybookSet(tuple(playbooks), policy, correlation, tuple(warnings))


def _rules_file(path: Path, model: type[M], problems: list[DocumentProblem]) -> M | None:
    """The rules file at ``path`` (a directory-wide file such as the policy) if there is one; its problems are
    added to ``problems``."""
    if not (path.is_file() or path.is_symlink()):
        return None
    try:
        _check_inside(path.parent, path)
        return load_model(path, model)
    except InvalidDocumentError as exc:
        problems.extend(exc.problems)
        return None


def _check_inside(directory: Path, path: Path) -> None:
    """InvalidDocumentError unless ``path`` is, once every link is followed, a file inside ``directory``."""
    target = path.resolve()
    if not target.is_relative_to(directory.resolve()):
        raise InvalidDocumentError(
            [DocumentProblem(path, None, "", f"links to {target}, outside the playbook directory; not read")]
        )


def load_playbooks(directory: Path, policy_allow: Allow | None = None) -> tuple[list[Playbook], list[DocumentProblem]]:
    """Every playbook in ``directory`` and the warnings about them; InvalidDocumentError listing all problems if
    any file is invalid.

    ``policy_allow``: the global allowlist, against which literal namespaces are checked."""
    problems: list[DocumentProblem] = []
    warnings: list[DocumentProblem] = []
    playbooks: list[Playbook] = []
    seen: dict[str, Path] = {}
    for path in playbook_files(directory):
        try:
            _check_inside(directory, path)
            playbook, noted = load_model_with_warnings(
                path, Playbook, check=lambda loaded: loaded.refused_namespaces(policy_allow), warn=unguaranteed_reads
            )
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
        warnings.extend(noted)
    if problems:
        raise InvalidDocumentError(problems)
    return playbooks, warnings
