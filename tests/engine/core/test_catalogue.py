import pytest
from pydantic import ValidationError

from engine.core.actions.catalogue import parse_params

SCALE = {"namespace": "serving", "deployment": "fraud"}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"replicas": 0}, id="zero-replicas"),
        pytest.param({"replicas": 0, "min_replicas": 0}, id="zero-minimum"),
        pytest.param({"replicas": 21}, id="above-default-maximum"),
        pytest.param({"replicas": 1, "min_replicas": 2, "max_replicas": 12}, id="below-minimum"),
        pytest.param({"step": 1, "min_replicas": 5, "max_replicas": 4}, id="inverted-bounds"),
    ],
)
def test_scale_targets_outside_the_bounds_are_invalid(params: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        parse_params("scale_deployment", SCALE | params)


@pytest.mark.parametrize(
    "params",
    [{"replicas": 1}, {"replicas": 20}, {"replicas": 4, "min_replicas": 2, "max_replicas": 4}, {"step": -1}],
)
def test_scale_targets_within_the_bounds_are_valid(params: dict[str, int]) -> None:
    assert parse_params("scale_deployment", SCALE | params).target() == "deployment:serving/fraud"
