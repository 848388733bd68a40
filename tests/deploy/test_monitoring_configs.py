"""The Prometheus and Alertmanager configs of compose.yaml pass `promtool check config` and `amtool check-config`.

Each service's bind mounts are laid out under a temporary root as the container sees them, so the check also proves
that the paths the configs name (rule files, the config itself) are where compose.yaml mounts them. The tools come
from the Debian packages prometheus and prometheus-alertmanager; the tests skip where they are not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.stack import compose, load_yaml, stage_container_files

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool is not installed (apt-get install prometheus-alertmanager)"
)


def _flag(service: str, name: str) -> str:
    command: list[str] = compose()["services"][service]["command"]
    return next(arg for arg in command if arg.startswith(f"--{name}=")).split("=")[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@pytest.fixture
def prometheus_root(tmp_path: Path) -> Path:
    stage_container_files(compose()["services"]["prometheus"], tmp_path)
    return tmp_path


@needs_promtool
def test_promtool_accepts_the_prometheus_config_as_mounted(prometheus_root: Path) -> None:
    assert PROMTOOL is not None
    config = prometheus_root / _flag("prometheus", "config.file").lstrip("/")
    result = _run(PROMTOOL, "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # Each rule file pattern finds the rules compose.yaml mounts (an empty glob would pass promtool silently).
    for pattern in load_yaml(config)["rule_files"]:
        assert sorted(config.parent.glob(pattern)), pattern


@needs_promtool
def test_promtool_refuses_a_broken_config(prometheus_root: Path) -> None:
    assert PROMTOOL is not None
    config = prometheus_root / _flag("prometheus", "config.file").lstrip("/")
    config.write_text(config.read_text().replace("scrape_interval: 15s", "scrape_interval: often", 1))
    assert _run(PROMTOOL, "check", "config", str(config)).returncode != 0


@needs_amtool
def test_amtool_accepts_the_alertmanager_config_as_mounted(tmp_path: Path) -> None:
    assert AMTOOL is not None
    stage_container_files(compose()["services"]["alertmanager"], tmp_path)
    config = tmp_path / _flag("alertmanager", "config.file").lstrip("/")
    result = _run(AMTOOL, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    config.write_text(config.read_text().replace("type: Bearer", "type: Bearer\n            password: x", 1))
    assert _run(AMTOOL, "check-config", str(config)).returncode != 0
