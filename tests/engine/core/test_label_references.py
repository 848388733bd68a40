"""Load-time warnings for templates and conditions that read incident labels not every trigger requires."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.adapters.playbook_files import load_playbook_set
from engine.core.playbooks.label_references import (
    condition_label_reads,
    required_labels,
    template_label_reads,
    unguaranteed_reads,
)
from engine.core.playbooks.model import Playbook, Trigger


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("{{ incident.labels.version }}", {"version"}),
        ("{{ incident.labels['version'] }}-{{ incident['labels'].model }}", {"version", "model"}),
        ("{{ incident.labels.get('version') }}", set()),
        ("{{ incident.labels.get('a', incident.labels.b) }}", {"b"}),
        ("{{ incident.labels.version | default('v1') }}", set()),
        ("{{ incident.labels.version | default(incident.labels.model) }}", {"model"}),
        ("{% if 'version' in incident.labels %}{{ incident.labels.version }}{% endif %}", set()),
        ("{% if incident.labels.version is defined %}{{ incident.labels.version }}{% endif %}", set()),
        ("{{ incident.labels.version | upper }}", {"version"}),
        ("{{ incident.id }} {{ incident.series }}", set()),
        ("{{ incident.labels[name] }}", set()),
        ("{{ broken", set()),
    ],
)
def test_template_reads(source: str, reads: set[str]) -> None:
    assert template_label_reads(source) == reads


def test_condition_reads() -> None:
    assert condition_label_reads('incident.labels.model == "fraud" and incident.peak_score > 0.9') == {"model"}
    assert condition_label_reads('incident.labels.get("model") == "fraud"') == set()


def test_required_labels_of_a_trigger() -> None:
    trigger = Trigger.model_validate(
        {
            "series": "x",
            "labels": {"namespace": "serving"},
            "matchers": ['model=~".+"', 'env!="dev"', 'version!=""', 'tier=~"a|"', 'zone="eu"'],
        }
    )
    # env!="dev" and tier=~"a|" also match a series without the label.
    assert required_labels(trigger) == {"namespace", "model", "version", "zone"}


def _playbook(triggers: list[dict[str, object]], deployment: str, conditions: list[str] | None = None) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "p",
            "triggers": triggers,
            "conditions": conditions or [],
            "steps": [
                {"action": "rollout_restart", "params": {"namespace": "serving", "deployment": deployment}},
            ],
        }
    )


def test_a_label_must_be_required_by_every_trigger() -> None:
    both = _playbook(
        [{"series": "a", "matchers": ['model=~".+"']}, {"series": "b", "labels": {"model": "m"}}],
        "{{ incident.labels.model }}",
    )
    assert unguaranteed_reads(both) == []
    one = _playbook(
        [{"series": "a", "matchers": ['model=~".+"']}, {"series": "b"}],
        "{{ incident.labels.model }}",
        conditions=["incident.labels.team == 'ml'"],
    )
    findings = unguaranteed_reads(one)
    assert [location for location, _ in findings] == [("conditions", 0), ("steps", 0, "params", "deployment")]
    assert "team" in findings[0][1]
    assert "model" in findings[1][1]


def test_warnings_carry_file_and_line_and_leave_the_set_valid(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\n"
        "triggers:\n"
        "  - series: latency\n"
        "steps:\n"
        "  - action: rollout_restart\n"
        "    params:\n"
        "      namespace: serving\n"
        '      deployment: "{{ incident.labels.model }}"\n'
    )
    loaded = load_playbook_set(tmp_path)
    assert [p.name for p in loaded.playbooks] == ["p"]
    [warning] = loaded.warnings
    assert (warning.path, warning.line, warning.field) == (tmp_path / "p.yaml", 8, "steps.0.params.deployment")
    assert "model" in warning.message
