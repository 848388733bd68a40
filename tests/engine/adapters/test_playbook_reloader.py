import shutil
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters import playbook_reloader
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.playbook_files import PlaybookSet, load_playbook_set
from engine.adapters.playbook_reloader import PlaybookReloader
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.actions.executor import ActionExecutor
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode
from tests.engine.adapters.tokens import BOOK, bearer

REPO = Path(__file__).resolve().parents[3]


def _setup(tmp_path: Path) -> tuple[Path, Remediator, PlaybookReloader, CollectorRegistry]:
    directory = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", directory)
    loaded = load_playbook_set(directory)
    ledger = MemoryLedger()
    remediator = Remediator(
        Planner(loaded.playbooks, ActionMode.DRY_RUN),
        ActionExecutor(ledger, FakeClock(), {}, owner="test"),
        ledger,
        loaded.policy,
    )
    registry = CollectorRegistry()
    reloader = PlaybookReloader(directory, remediator, FakeClock(), registry, current=loaded)
    return directory, remediator, reloader, registry


def test_unchanged_directory_is_not_reloaded(tmp_path: Path) -> None:
    _, _, reloader, _ = _setup(tmp_path)
    assert reloader.reload_if_changed() is False


def test_a_valid_change_swaps_the_whole_set(tmp_path: Path) -> None:
    directory, remediator, reloader, registry = _setup(tmp_path)
    (directory / "gpu-memory-pressure.yaml").unlink()
    assert reloader.reload_if_changed() is True
    assert "gpu-memory-pressure" not in {p.name for p in remediator.planner.playbooks}
    assert registry.get_sample_value("aiops_playbook_reloads_total", {"result": "applied"}) == 1


def test_an_invalid_file_keeps_the_previous_set_and_reports_why(tmp_path: Path) -> None:
    directory, remediator, reloader, registry = _setup(tmp_path)
    before = remediator.planner.playbooks
    (directory / "gpu-memory-pressure.yaml").unlink()
    (directory / "broken.yaml").write_text("name: broken\ntriggers:\n  - series: up\nsteps:\n  - action: rm_rf\n")
    assert reloader.reload_if_changed() is False
    assert remediator.planner.playbooks == before
    [problem] = reloader.status.problems
    assert (problem.path.name, problem.line, problem.field) == ("broken.yaml", 5, "steps.0.action")
    assert registry.get_sample_value("aiops_playbooks_valid") == 0
    assert registry.get_sample_value("aiops_playbook_reloads_total", {"result": "rejected"}) == 1


async def test_the_api_shows_the_active_set_and_the_rejection(tmp_path: Path) -> None:
    directory, _, reloader, _ = _setup(tmp_path)
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, playbooks=reloader, tokens=BOOK
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.ADMIN)
    ) as client:
        shown = (await client.get("/api/v1/playbooks")).json()
        assert shown["valid"] is True
        assert "latency-scale-out" in shown["playbooks"]
        forbidden = await client.post("/api/v1/playbooks/reload", headers=bearer(Role.RESPONDER))
        assert forbidden.status_code == 403
        (directory / "bad.yaml").write_text("name: [")
        reloaded = (await client.post("/api/v1/playbooks/reload")).json()
        assert reloaded["valid"] is False
        assert reloaded["playbooks"] == shown["playbooks"]
        assert reloaded["problems"][0]["file"].endswith("bad.yaml")
    await store.close()


async def test_a_hostile_file_is_parsed_off_the_loop_and_keeps_the_previous_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, remediator, reloader, registry = _setup(tmp_path)
    before = remediator.planner.playbooks
    bomb = ["name: bomb", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    bomb += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 8)]
    (directory / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    threads: list[int] = []

    def recording(path: Path) -> PlaybookSet:
        threads.append(threading.get_ident())
        return load_playbook_set(path)

    monkeypatch.setattr(playbook_reloader, "load_playbook_set", recording)
    assert await reloader.reload_in_thread() is False
    assert threads
    assert threads[0] != threading.get_ident()
    assert remediator.planner.playbooks == before
    assert [problem.path.name for problem in reloader.status.problems] == ["bomb.yaml"]
    assert registry.get_sample_value("aiops_playbook_reloads_total", {"result": "rejected"}) == 1


async def test_warnings_of_the_active_set_are_shown_and_kept_through_a_rejection(tmp_path: Path) -> None:
    directory, _, reloader, _ = _setup(tmp_path)
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, playbooks=reloader, tokens=BOOK
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.ADMIN)
    ) as client:
        assert (await client.get("/api/v1/playbooks")).json()["warnings"] == []
        gpu = directory / "gpu-memory-pressure.yaml"
        gpu.write_text(gpu.read_text().replace("matchers: ['deployment=~\".+\"', 'namespace=~\".+\"']", "matchers: []"))
        applied = (await client.post("/api/v1/playbooks/reload")).json()
        assert applied["valid"] is True
        assert {(w["file"].rsplit("/", 1)[-1], w["field"]) for w in applied["warnings"]} == {
            ("gpu-memory-pressure.yaml", "steps.0.params.namespace"),
            ("gpu-memory-pressure.yaml", "steps.0.params.deployment"),
        }
        (directory / "bad.yaml").write_text("name: [")
        rejected = (await client.post("/api/v1/playbooks/reload")).json()
        assert rejected["valid"] is False
        assert rejected["warnings"] == applied["warnings"]
    await store.close()
