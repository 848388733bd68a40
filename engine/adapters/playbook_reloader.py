"""Hot reload of the playbook directory.

The directory is polled (a signature of names, sizes and modification times), which works the same on a laptop
and with a Kubernetes ConfigMap, whose updates swap a symlink rather than write files. A changed directory is
validated as a whole: if any file is invalid nothing changes and the problems are kept for the log, the metrics
and the API; otherwise the new set replaces the old one in one assignment.

Parsing and validating run in a worker thread (``watch`` and ``reload_in_thread``), so that a large or hostile
file delays only the reload, never the event loop that ingests samples and serves the API.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.adapters.playbook_files import PlaybookSet, load_playbook_set
from engine.adapters.yaml_documents import DocumentProblem, InvalidDocumentError
from engine.core.incidents import IncidentManager
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import Clock
from engine.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]


def directory_signature(directory: Path) -> Signature:
    try:
        entries = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
        return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in entries)
    except OSError:
        return ()


@dataclass(frozen=True)
class ReloadStatus:
    loaded_at: float
    playbooks: tuple[str, ...]
    # Problems of the newest attempt that was rejected; empty when the newest attempt was applied.
    problems: tuple[DocumentProblem, ...] = ()
    # Warnings about the active set (kept while a newer attempt is rejected: they are about what runs).
    warnings: tuple[DocumentProblem, ...] = ()


class PlaybookReloader:
    def __init__(
        self,
        directory: Path,
        remediator: Remediator,
        clock: Clock,
        registry: CollectorRegistry,
        *,
        current: PlaybookSet,
        incidents: IncidentManager | None = None,
    ) -> None:
        self._directory = directory
        self._remediator = remediator
        self._incidents = incidents
        self._clock = clock
        self._signature = directory_signature(directory)
        self.status = ReloadStatus(clock.now(), tuple(p.name for p in current.playbooks), (), current.warnings)
        self._reloads = Counter(
            "aiops_playbook_reloads_total", "Playbook directory reloads by result", ["result"], registry=registry
        )
        self._valid = Gauge(
            "aiops_playbooks_valid", "1 if the newest playbook directory content is valid, else 0", registry=registry
        )
        self._valid.set(1)

    def reload_if_changed(self) -> bool:
        """Reload when the directory changed; True if a new set was applied."""
        return self._changed() and self.reload()

    def reload(self) -> bool:
        """Validate the directory now, on this thread; True if a new set was applied."""
        return self._apply(self._load())

    async def reload_in_thread(self) -> bool:
        """``reload`` with the parsing and validation in a worker thread; the new set is applied on the loop."""
        return self._apply(await asyncio.to_thread(self._load))

    def _changed(self) -> bool:
        signature = directory_signature(self._directory)
        if signature == self._signature:
            return False
        self._signature = signature
        return True

    def _load(self) -> PlaybookSet | tuple[DocumentProblem, ...]:
        try:
            return load_playbook_set(self._directory)
        except InvalidDocumentError as exc:
            return exc.problems
        except ConfigurationError as exc:
            return (DocumentProblem(self._directory, None, "", str(exc)),)

    def _apply(self, loaded: PlaybookSet | tuple[DocumentProblem, ...]) -> bool:
        if isinstance(loaded, tuple):
            self._reject(loaded)
            return False
        self._remediator.replace(loaded.playbooks, loaded.policy, loaded.correlation)
        if self._incidents is not None:
            self._incidents.replace_rules(loaded.correlation)
        self.status = ReloadStatus(self._clock.now(), tuple(p.name for p in loaded.playbooks), (), loaded.warnings)
        self._reloads.labels("applied").inc()
        self._valid.set(1)
        log.info("playbooks reloaded: %s", ", ".join(self.status.playbooks))
        for warning in loaded.warnings:
            log.warning("playbook warning: %s", warning)
        return True

    def _reject(self, problems: tuple[DocumentProblem, ...]) -> None:
        self.status = ReloadStatus(self.status.loaded_at, self.status.playbooks, problems, self.status.warnings)
        self._reloads.labels("rejected").inc()
        self._valid.set(0)
        for problem in problems:
            log.error("playbook reload rejected, keeping the previous set: %s", problem)

    async def watch(self, interval_s: float) -> None:
        """Poll forever (until cancelled)."""
        while True:
            await self._clock.sleep(interval_s)
            if self._changed():
                await self.reload_in_thread()
