"""What a playbook writes literally is checked when it loads, not when the step would run."""

from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.playbooks.guards import Allow
from engine.core.playbooks.model import Playbook
from tests.engine.factories import LATENCY


def _playbook(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "scale",
        "triggers": [{"series": LATENCY.name}],
        "steps": [{"action": "scale_deployment", "params": params}],
        **extra,
    }


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"namespace": "serving", "deployment": "fraud", "replicas": 0}, id="all-literal"),
        pytest.param({"namespace": "{{ incident.labels.namespace }}", "deployment": "x", "replicas": 0}, id="mixed"),
        pytest.param({"namespace": "serving", "deployment": "x", "step": 1, "min_replicas": 0}, id="zero-minimum"),
    ],
)
def test_literal_parameters_the_action_refuses_are_load_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        Playbook.model_validate(_playbook(params))
    [error] = raised.value.errors()
    assert error["loc"] == ("steps", 0)


def test_templated_parameters_are_left_to_run_time() -> None:
    params = {"namespace": "serving", "deployment": "{{ incident.labels.model }}", "replicas": "{{ 3 }}"}
    assert Playbook.model_validate(_playbook(params)).steps[0].params == params


def test_templates_nested_in_parameters_are_compiled_at_load() -> None:
    silence = {"action": "alertmanager_silence", "params": {"matchers": {"alertname": "{{ incident. }}"}}}
    with pytest.raises(ValidationError) as raised:
        Playbook.model_validate(_playbook({}) | {"steps": [silence]})
    assert raised.value.errors()[0]["loc"] == ("steps", 0)


@pytest.mark.parametrize(
    ("policy", "guards", "refused"),
    [
        pytest.param(Allow(namespaces=["serving"]), {}, [("steps", 0, "params", "namespace")], id="policy"),
        pytest.param(None, {"allow": {"namespaces": ["serving"]}}, [("steps", 0, "params", "namespace")], id="own"),
        pytest.param(Allow(namespaces=["kube-system"]), {}, [], id="allowed"),
        pytest.param(None, {}, [], id="no-allowlist"),
    ],
)
def test_literal_namespaces_outside_an_allowlist_are_found(
    policy: Allow | None, guards: dict[str, Any], refused: list[tuple[str | int, ...]]
) -> None:
    params = {"namespace": "kube-system", "deployment": "coredns", "step": 1}
    playbook = Playbook.model_validate(_playbook(params, guards=guards))
    assert [location for location, _ in playbook.refused_namespaces(policy)] == refused


def test_templated_namespaces_are_left_to_the_guards() -> None:
    params = {"namespace": "{{ incident.labels.namespace }}", "deployment": "coredns", "step": 1}
    playbook = Playbook.model_validate(_playbook(params))
    assert playbook.refused_namespaces(Allow(namespaces=["serving"])) == []
