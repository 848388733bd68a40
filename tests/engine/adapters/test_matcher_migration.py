"""Migration 0011: label matchers stored by earlier versions (silences, verifications of planned steps) keep the
values they had once matchers are read as PromQL strings."""

from __future__ import annotations

import importlib
import json
from types import ModuleType

import pytest
from sqlalchemy import JSON, column, table, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from engine.adapters.store.sql_store import SqlStore
from engine.core.playbooks.expressions import LabelMatcher
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification, Verify
from engine.core.silences import SignalSilence
from engine.domain.events import ActionMode, ActionRequest, SeriesKey

# As earlier versions stored them, and the values they read from them: only \" was an escape.
LEGACY = {
    'job=~"fraud\\.v2"': "fraud\\.v2",
    'msg="say \\"hi\\" \\n"': 'say "hi" \\n',
    'path!="C:\\\\x"': "C:\\\\x",
    'zone="eu-west"': "eu-west",
}


_SILENCES = table("signal_silences", column("matchers", JSON))


def _migration() -> ModuleType:
    return importlib.import_module("engine.adapters.store.migrations.versions.0011_promql_matcher_literals")


@pytest.mark.parametrize(("stored", "value"), LEGACY.items())
def test_a_matcher_as_earlier_versions_stored_it_reads_back_to_the_same_value(stored: str, value: str) -> None:
    rewritten = _migration().rewritten(stored)
    assert LabelMatcher.parse(rewritten).value == value


def test_what_earlier_versions_did_not_read_is_left_as_it_is() -> None:
    assert _migration().rewritten("job=`raw`") == "job=`raw`"


async def test_stored_silences_and_verifications_are_rewritten_by_the_upgrade(database_url: str) -> None:
    url = database_url
    store = await SqlStore.open(url)
    await store.add_silence(SignalSilence("sil-1", None, ('zone="eu-west"',), 0.0, 1e12, "alice", "maintenance"))
    request = ActionRequest(
        id="act-1",
        incident_id="inc-1",
        playbook="scale-out",
        step=0,
        action="scale_deployment",
        params={"namespace": "serving", "deployment": "fraud"},
        mode=ActionMode.DRY_RUN,
        requested_at=100.0,
    )
    spec = Verify(condition="value < 0.5", series="latency_p99", matchers=['zone="eu-west"'], within=300)
    series = SeriesKey.of("latency_p99", {})
    await store.ledger.plan(
        [PlannedStep(request, Guards(), PendingVerification(request, spec, series, {}, 100.0))], at=100.0
    )
    await store.close()

    # Back to what an earlier version would have left: its matchers, and the schema before 0011.
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(update(_SILENCES).values(matchers=list(LEGACY)))
        plan = json.loads((await connection.execute(text("SELECT plan FROM actions"))).scalar_one())
        plan["verification"]["spec"]["matchers"] = list(LEGACY)
        await connection.execute(text("UPDATE actions SET plan = :p"), {"p": json.dumps(plan)})
        await connection.execute(text("DROP TABLE signal_points"))  # added by 0013
        await connection.execute(text("ALTER TABLE incidents DROP COLUMN signals"))  # added by 0012
        await connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    await engine.dispose()

    store = await SqlStore.open(url)
    try:
        [silence] = await store.active_silences(at=1.0)
        assert [LabelMatcher.parse(m).value for m in silence.matchers] == list(LEGACY.values())
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            plan = json.loads((await connection.execute(text("SELECT plan FROM actions"))).scalar_one())
        await engine.dispose()
        stored = plan["verification"]["spec"]["matchers"]
        assert [LabelMatcher.parse(m).value for m in stored] == list(LEGACY.values())
    finally:
        await store.close()
