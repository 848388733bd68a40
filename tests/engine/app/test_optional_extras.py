"""Where the ``detectors`` extra is not installed (a plain ``pip install``, or an engine image built with
``--build-arg EXTRAS=``), what needs it says how to install it, and everything else works. Each case runs in a
fresh interpreter in which the extra's libraries cannot be imported, as where they are not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCENARIO_CSV = REPO / "engine" / "scenarios" / "serving_stack_in_trouble" / "fraud_error_ratio.csv"
DETECTORS_EXTRA = ("river", "sklearn", "scipy")


def _without(libraries: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in libraries)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{hide}{code}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("family", "library"), [("hst", "river"), ("isolation_forest", "sklearn"), ("ks", "scipy")])
def test_a_family_on_a_missing_library_says_how_to_install_it(family: str, library: str) -> None:
    code = (
        "from detectors import registry\n"
        "try:\n"
        f"    registry.build_batch({family!r}, 4)\n"
        "except registry.UnknownDetectorError as exc:\n"
        "    print(exc)\n"
    )
    done = _without(DETECTORS_EXTRA, code)
    assert done.returncode == 0, done.stderr
    assert f"needs {library}, which is not installed: pip install 'aiops-engine[detectors]'" in done.stdout
    assert "--build-arg EXTRAS=detectors" in done.stdout


def test_the_numpy_families_and_psi_need_no_extra() -> None:
    code = (
        "from detectors import registry\nfor name in ('default', 'ewma', 'psi'):\n    registry.build_batch(name, 4)\n"
    )
    done = _without(DETECTORS_EXTRA, code)
    assert done.returncode == 0, done.stderr


def test_serve_refuses_such_a_family_as_a_configuration_error() -> None:
    code = (
        "from engine.app.bootstrap import detection_service\n"
        "from engine.app.settings import load_settings\n"
        "from engine.domain.errors import ConfigurationError\n"
        "try:\n"
        "    detection_service(load_settings({'AIOPS_DETECTOR': 'hst'}))\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = _without(DETECTORS_EXTRA, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("AIOPS_DETECTOR: this detector family needs river"), done.stdout


def test_backtest_draws_its_plot_without_the_extra(tmp_path: Path) -> None:
    code = (
        "from engine.app.cli import main\n"
        f"sys.argv = ['aiops', 'backtest', {str(SCENARIO_CSV)!r}, '--plot', {str(tmp_path / 'plot.svg')!r}]\n"
        "main()\n"
    )
    done = _without(DETECTORS_EXTRA, code)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plot.svg").read_text().startswith("<svg ")
