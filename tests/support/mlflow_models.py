"""Models in the real MLflow server of the tests: three versions of a pyfunc model logged once
(``tests/integration/mlflow_constant_model.py``: version n predicts n, so a prediction says which version
answered), and registered models made of them, each under a fresh name."""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

MODEL_CODE = Path(__file__).resolve().parents[1] / "integration" / "mlflow_constant_model.py"


@dataclass(frozen=True)
class Sources:
    """Where the three logged test models are: version n of every test model is the model predicting n."""

    run_id: str
    uris: tuple[str, ...]


def log_constant_models(client: MlflowClient, folder: Path) -> Sources:
    """Logs the models predicting 1, 2 and 3 as artifacts of one run (saved under ``folder`` first)."""
    with warnings.catch_warnings():
        # Importing mlflow.pyfunc warns about a type hint of MLflow's own built-in agent schema.
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning)
        import mlflow.pyfunc  # noqa: PLC0415 - slow to import; only the MLflow tests need it

    experiment = client.create_experiment(f"aiops-test-{uuid.uuid4().hex}")
    run = client.create_run(experiment)
    uris = []
    for version in (1, 2, 3):
        path = folder / f"v{version}"
        mlflow.pyfunc.save_model(
            str(path), python_model=str(MODEL_CODE), model_config={"version": version}, pip_requirements=["mlflow"]
        )
        client.log_artifacts(run.info.run_id, str(path), f"v{version}")
        uris.append(f"{run.info.artifact_uri}/v{version}")
    client.set_terminated(run.info.run_id)
    return Sources(run.info.run_id, tuple(uris))


def register_model(client: MlflowClient, sources: Sources, versions: int = 3) -> str:
    """A new registered model with ``versions`` versions and its alias ``champion`` on the newest."""
    name = f"aiops-test-{uuid.uuid4().hex[:12]}"
    client.create_registered_model(name)
    for uri in sources.uris[:versions]:
        client.create_model_version(name, uri, run_id=sources.run_id)
    client.set_registered_model_alias(name, "champion", str(versions))
    return name
