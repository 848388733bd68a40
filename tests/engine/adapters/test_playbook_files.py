import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from engine.adapters.playbook_files import load_playbook_set, load_playbooks, playbook_files
from engine.adapters.yaml_documents import InvalidDocumentError
from engine.core.playbooks.model import playbook_json_schema
from engine.domain.errors import ConfigurationError
from engine.domain.events import SeriesKey

REPO = Path(__file__).resolve().parents[3]
VALID = """\
name: restart-on-gpu
triggers:
  - series: gpu_memory_used_ratio
steps:
  - action: rollout_restart
    params:
      namespace: serving
      deployment: fraud
"""


def test_every_shipped_playbook_loads_without_warnings() -> None:
    playbooks, warnings = load_playbooks(REPO / "playbooks")
    assert warnings == []
    assert {p.name for p in playbooks} >= {
        "latency-scale-out",
        "error-burst-rollback",
        "gpu-memory-pressure",
        "feature-drift-retrain",
    }


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    bad = VALID.replace("      deployment: fraud", "      deployment: fraud\n      replicas: 3")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(InvalidDocumentError) as info:
        load_playbooks(tmp_path)
    [problem] = info.value.problems
    assert problem.path == tmp_path / "bad.yaml"
    assert problem.line == 5
    assert problem.field == "steps.0"
    assert "unknown parameter(s) replicas" in problem.message


def test_enum_errors_list_the_allowed_values(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(VALID.replace("steps:", "mode: yolo\nsteps:"))
    with pytest.raises(InvalidDocumentError) as info:
        load_playbooks(tmp_path)
    [problem] = info.value.problems
    assert (problem.line, problem.field) == (4, "mode")
    assert "'live', 'dry-run' or 'shadow'" in problem.message


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\ntriggers: [\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_playbooks(tmp_path)
    assert info.value.problems[0].line == 3
    assert "not valid YAML" in str(info.value)


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    with pytest.raises(InvalidDocumentError, match="also used by"):
        load_playbooks(tmp_path)


def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_playbooks(tmp_path / "nope")


def test_shipped_schema_is_generated_from_the_models() -> None:
    shipped = json.loads((REPO / "playbooks" / "playbook.schema.json").read_text())
    assert shipped == playbook_json_schema()


def test_shipped_playbooks_satisfy_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(playbook_json_schema())
    for path in playbook_files(REPO / "playbooks"):
        document = YAML(typ="safe").load(path.read_text())
        assert list(validator.iter_errors(document)) == [], path.name


def test_schema_rejects_unknown_actions_for_editors() -> None:
    validator = jsonschema.Draft202012Validator(playbook_json_schema())
    bad = {"name": "x", "triggers": [{"series": "up"}], "steps": [{"action": "reboot"}]}
    assert not validator.is_valid(bad)


def test_schema_accepts_durations_and_matchers_as_authors_write_them() -> None:
    validator = jsonschema.Draft202012Validator(playbook_json_schema())
    good = {
        "name": "x",
        "triggers": [{"series": "up", "for": "1h30m", "matchers": ['job=~"api.*"']}],
        "steps": [{"action": "rollout_undo", "params": {"namespace": "a", "deployment": "b"}}],
    }
    assert list(validator.iter_errors(good)) == []
    assert not validator.is_valid(good | {"triggers": [{"series": "up", "for": "soon"}]})


def test_shipped_policy_loads_with_the_playbooks() -> None:
    shipped = load_playbook_set(REPO / "playbooks")
    assert len(shipped.playbooks) == 5
    assert {rule.name for rule in shipped.policy.blast_radius} >= {"one-model-rollback-per-model-per-hour"}


def test_an_invalid_policy_rejects_the_whole_set(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "_policy.yaml").write_text("blast_radius:\n  - name: x\n    actions: [rollout_undo]\n    window: 1h\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_playbook_set(tmp_path)
    [problem] = info.value.problems
    assert (problem.path.name, problem.line, problem.field) == ("_policy.yaml", 2, "blast_radius.0")


def test_shipped_correlation_rules_group_a_workload_s_series() -> None:
    rules = load_playbook_set(REPO / "playbooks").correlation
    gpu = SeriesKey.of("gpu_memory_used_ratio", {"deployment": "fraud-detector", "namespace": "serving"})
    latency = SeriesKey.of("model_request_latency_p99_seconds", {"model": "fraud-detector", "namespace": "serving"})
    assert rules.group_of(gpu) == rules.group_of(latency) is not None


def test_invalid_correlation_rules_reject_the_whole_set_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "_correlation.yaml").write_text("group_by: [namespace]\nlabels:\n  workload: []\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_playbook_set(tmp_path)
    [problem] = info.value.problems
    assert (problem.path.name, problem.line, problem.field) == ("_correlation.yaml", 2, "labels")


def test_a_link_to_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    directory, outside = tmp_path / "playbooks", tmp_path / "secret.yaml"
    directory.mkdir()
    outside.write_text(VALID)
    (directory / "stolen.yaml").symlink_to(outside)
    with pytest.raises(InvalidDocumentError) as info:
        load_playbook_set(directory)
    [problem] = info.value.problems
    assert (problem.path.name, problem.field) == ("stolen.yaml", "")


def test_a_link_inside_the_directory_is_read_as_configmaps_mount_files(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "restart.yaml").write_text(VALID)
    (tmp_path / "restart.yaml").symlink_to(tmp_path / "..data" / "restart.yaml")
    assert [p.name for p in load_playbook_set(tmp_path).playbooks] == ["restart-on-gpu"]


def test_a_literal_namespace_outside_the_policy_allowlist_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "_policy.yaml").write_text("allow:\n  namespaces: [serving]\n")
    (tmp_path / "system.yaml").write_text(VALID.replace("namespace: serving", "namespace: kube-system"))
    with pytest.raises(InvalidDocumentError) as info:
        load_playbook_set(tmp_path)
    [problem] = info.value.problems
    assert (problem.path.name, problem.line, problem.field) == ("system.yaml", 7, "steps.0.params.namespace")


def test_an_alias_bomb_in_a_playbook_rejects_the_set(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    bomb = ["name: bomb", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    bomb += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_playbook_set(tmp_path)
    assert [problem.path.name for problem in info.value.problems] == ["bomb.yaml"]
