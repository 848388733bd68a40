"""The project's container images, built with buildah and run with podman for the image tests.

``make test`` exports AIOPS_TEST_CONTAINERS with the podman and buildah configuration that
``scripts/services/containers.sh env`` prints; without it the image tests are skipped, as other integration tests
are without their servers. With it, an image that cannot be built fails the tests that need it. Each image is
built once a test run (the session fixtures in ``conftest.py``). Containers share the host's network, so they reach
the test servers on 127.0.0.1 and are reached on a free loopback port; each is removed when its test is done.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.deploy.stack import REPO

SCRIPT = REPO / "scripts" / "services" / "containers.sh"
ENABLED = os.environ.get("AIOPS_TEST_CONTAINERS") == "1"
needs_images = pytest.mark.skipif(
    not ENABLED,
    reason="AIOPS_TEST_CONTAINERS is not set (make test builds and runs the images: scripts/services/containers.sh)",
)
# A first build on a two-core machine takes a few minutes; pip downloads the dependencies each time.
BUILD_TIMEOUT_S = 1800


def build(name: str) -> str:
    """Builds the image ``name`` (engine or model-server) and returns its reference; fails the test if it cannot."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), "build", name], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"building the {name} image took more than {BUILD_TIMEOUT_S} s: {expired.stderr!r}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"building the {name} image failed:\n{done.stderr[-6000:]}", pytrace=False)
    return done.stdout.strip().splitlines()[-1]


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def image_size(image: str) -> int:
    """The image's size in bytes, all layers unpacked (what ``podman images`` shows)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)


def run_once(
    image: str,
    *args: str,
    entrypoint: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``args`` run in a new container of ``image`` (removed afterwards), by the image's entrypoint or by
    ``entrypoint``; with ``check``, fails unless it exits with status 0."""
    options = ["--rm", "--network=host", "--health-interval=disable"]
    options += [f"--env={name}={value}" for name, value in (env or {}).items()]
    if entrypoint is not None:
        options.append(f"--entrypoint={entrypoint}")
    return podman("run", *options, image, *args, timeout=timeout, check=check)


@dataclass(frozen=True)
class Container:
    name: str

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False)

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def stop(self, grace_s: int) -> tuple[int, float]:
        """SIGTERM, and SIGKILL after ``grace_s`` as Docker and Kubernetes do: the exit status and the seconds it
        took to exit."""
        started = time.monotonic()
        podman("stop", "--time", str(grace_s), self.name, timeout=grace_s + 60)
        return int(self.inspect("{{.State.ExitCode}}")), time.monotonic() - started


@contextmanager
def running(image: str, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Container]:
    """A container of ``image`` running ``args`` on the host's network, removed afterwards. Its health check runs
    only when asked (``podman healthcheck run``): podman's timers for it need systemd."""
    container = Container(f"aiops-test-{uuid.uuid4().hex[:12]}")
    options = [f"--env={name}={value}" for name, value in (env or {}).items()]
    podman(
        "run",
        "--detach",
        "--name",
        container.name,
        "--network=host",
        "--health-interval=disable",
        *options,
        image,
        *args,
    )
    try:
        yield container
    finally:
        print(f"--- {container.name} ({image} {' '.join(args)}) ---\n{container.logs()}")  # shown if the test failed
        podman("rm", "--force", "--time=0", container.name, check=False)
