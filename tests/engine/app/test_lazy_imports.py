"""The CLI and the engines' wiring import the heavy libraries only for the features that need them: an idle
``aiops serve`` held 430 MB when every detector family, MLflow's and Kubernetes' clients and matplotlib were
imported at start (136 MB without them)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "scipy", "river", "mlflow", "kubernetes", "matplotlib", "pandas")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return [name for name in result.stdout.strip().split(",") if name]


def test_the_cli_and_the_engine_wiring_import_no_heavy_library() -> None:
    code = "import engine.app.cli, engine.app.kafka_engine, engine.app.bootstrap, engine.app.action_backends"
    assert _imported_after(code) == []


def test_a_family_that_needs_one_imports_it_when_built() -> None:
    code = "from detectors import registry\nregistry.build_batch('isolation_forest', 4)"
    assert "sklearn" in _imported_after(code)
