"""The Dockerfile rules the project's images are held to, as small functions over parsed stages.

Each rule returns the problems it finds (empty: the Dockerfile passes). The rules, and why:

* ``pinned_base_images``: every ``FROM`` names a tag other than ``latest`` (or a digest), so a rebuild gets the same
  base until someone moves the pin on purpose. A ``FROM`` of an earlier stage is fine.
* ``runs_as_numeric_non_root``: the final stage ends on ``USER uid[:gid]`` with a numeric, non-zero uid, which
  Kubernetes' ``runAsNonRoot`` can verify without reading the image's /etc/passwd.
* ``has_python_healthcheck``: the final stage has a ``HEALTHCHECK`` and it does not rely on curl or wget, which the
  slim Python images lack.
* ``no_remote_add``: ``ADD`` never fetches a URL or a git repository; sources come through ``COPY`` from the build
  context, which ``.dockerignore`` filters.
* ``pip_without_cache``: every ``pip install`` passes ``--no-cache-dir``, so the wheel cache does not end up in a layer.
* ``apt_lists_cleaned``: a ``RUN`` that installs with apt-get uses ``--no-install-recommends`` and removes
  /var/lib/apt/lists in the same layer.
* ``exec_form_entrypoint``: ``ENTRYPOINT`` and ``CMD`` are JSON arrays, so SIGTERM reaches the process, not a shell.
* ``expose_matches_listen_port``: the ports ``EXPOSE`` declares are the port the process listens on (``--port`` in
  ``ENTRYPOINT``/``CMD``, else the ``AIOPS_HTTP_PORT`` the image sets) and the port its health check asks.
* ``venv_copied_between_equal_bases``: a stage that copies from another stage runs on the same base image, so the
  copied virtual environment's interpreter links stay valid.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from dockerfile_parse import DockerfileParser


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str
    line: int


@dataclass(frozen=True)
class Stage:
    base: str
    alias: str | None
    instructions: tuple[Instruction, ...]

    def all(self, name: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.name == name]

    def last(self, name: str) -> Instruction | None:
        found = self.all(name)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.value):
                key, _, value = word.partition("=")
                values[key] = value
        return values


def parse_stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, each with its instructions (comments dropped, continuations joined)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    stages: list[Stage] = []
    base, alias, body = "", None, list[Instruction]()
    for item in parser.structure:
        name, value = item["instruction"], item["value"]
        if name == "COMMENT":
            continue
        if name == "FROM":
            if base:
                stages.append(Stage(base, alias, tuple(body)))
            words = value.split()
            words = [word for word in words if not word.startswith("--")]
            base = words[0]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            body = []
            continue
        body.append(Instruction(name, value, item["startline"] + 1))
    if base:
        stages.append(Stage(base, alias, tuple(body)))
    return stages


def json_args(instruction: Instruction | None) -> list[str]:
    """The arguments of an exec-form instruction (``[]`` when absent or in shell form)."""
    if instruction is None:
        return []
    try:
        args = json.loads(instruction.value)
    except json.JSONDecodeError:
        return []
    return [str(arg) for arg in args] if isinstance(args, list) else []


def healthcheck_command(stage: Stage) -> str:
    check = stage.last("HEALTHCHECK")
    if check is None:
        return ""
    _, _, command = check.value.partition("CMD")
    return command.strip()


def pinned_base_images(stages: list[Stage]) -> list[str]:
    problems = []
    aliases: set[str] = set()
    for stage in stages:
        image = stage.base
        name = image.rsplit("/", 1)[-1]
        if "$" in image:
            problems.append(f"FROM {image}: a build argument hides which base image is used")
        elif image not in aliases and "@sha256:" not in image and name.partition(":")[2] in {"", "latest"}:
            problems.append(f"FROM {image}: pin a version tag (not latest) or a digest")
        if stage.alias:
            aliases.add(stage.alias)
    return problems


def runs_as_numeric_non_root(stages: list[Stage]) -> list[str]:
    user = stages[-1].last("USER")
    if user is None:
        return ["the final stage runs as root: add USER <uid>:<gid>"]
    match = re.fullmatch(r"(\d+)(:\d+)?", user.value.strip())
    if match is None:
        return [f"USER {user.value}: use a numeric uid[:gid] so runAsNonRoot can check it"]
    if int(match[1]) == 0:
        return ["USER 0 is root"]
    return []


def has_python_healthcheck(stages: list[Stage]) -> list[str]:
    check = stages[-1].last("HEALTHCHECK")
    if check is None or check.value.strip().upper() == "NONE":
        return ["the final stage has no HEALTHCHECK"]
    command = healthcheck_command(stages[-1])
    if re.search(r"\b(curl|wget)\b", command):
        return ["the HEALTHCHECK uses curl or wget, which slim Python images do not have"]
    return []


def no_remote_add(stages: list[Stage]) -> list[str]:
    return [
        f"line {add.line}: ADD {add.value} fetches from outside the build context; use COPY"
        for stage in stages
        for add in stage.all("ADD")
        if re.search(r"(^|\s)(\w+://|git@)", add.value)
    ]


def _commands(run: str) -> list[str]:
    return [part.strip() for part in re.split(r"&&|;|\|\|", run) if part.strip()]


def pip_without_cache(stages: list[Stage]) -> list[str]:
    return [
        f"line {run.line}: {command!r} keeps pip's cache in the layer; add --no-cache-dir"
        for stage in stages
        for run in stage.all("RUN")
        for command in _commands(run.value)
        if re.search(r"\bpip3?\s+install\b", command) and "--no-cache-dir" not in command
    ]


def apt_lists_cleaned(stages: list[Stage]) -> list[str]:
    problems = []
    for stage in stages:
        for run in stage.all("RUN"):
            if not re.search(r"\bapt(-get)?\s+install\b", run.value):
                continue
            if "--no-install-recommends" not in run.value:
                problems.append(f"line {run.line}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in run.value:
                problems.append(f"line {run.line}: apt lists stay in the layer; rm -rf /var/lib/apt/lists/*")
    return problems


def exec_form_entrypoint(stages: list[Stage]) -> list[str]:
    problems = []
    for name in ("ENTRYPOINT", "CMD"):
        instruction = stages[-1].last(name)
        if instruction is not None and not json_args(instruction):
            problems.append(f"{name} {instruction.value}: use the exec (JSON array) form so signals reach the process")
    return problems


def listen_port(stage: Stage) -> int | None:
    """The port the final stage's process listens on: ``--port`` in ENTRYPOINT/CMD, else AIOPS_HTTP_PORT."""
    args = json_args(stage.last("ENTRYPOINT")) + json_args(stage.last("CMD"))
    for index, arg in enumerate(args):
        if arg == "--port" and index + 1 < len(args):
            return int(args[index + 1])
        if arg.startswith("--port="):
            return int(arg.partition("=")[2])
    port = stage.env().get("AIOPS_HTTP_PORT")
    return int(port) if port else None


def healthcheck_ports(stage: Stage) -> set[int]:
    """Ports the health check asks: literal ``host:port/`` URLs, or the default of AIOPS_HTTP_PORT it reads."""
    command = healthcheck_command(stage)
    ports = {int(port) for port in re.findall(r"://[\w.\-]+:(\d+)/", command)}
    ports |= {int(port) for port in re.findall(r"AIOPS_HTTP_PORT['\"],\s*['\"](\d+)['\"]", command)}
    return ports


def expose_matches_listen_port(stages: list[Stage]) -> list[str]:
    final = stages[-1]
    exposed = {int(word.split("/")[0]) for expose in final.all("EXPOSE") for word in expose.value.split()}
    port = listen_port(final)
    if port is None:
        return ["cannot tell which port the process listens on (no --port, no AIOPS_HTTP_PORT)"]
    problems = []
    if exposed != {port}:
        problems.append(f"EXPOSE {sorted(exposed)} but the process listens on {port}")
    if healthcheck_ports(final) - {port} or not healthcheck_ports(final):
        problems.append(f"the HEALTHCHECK asks {sorted(healthcheck_ports(final))}, not the listen port {port}")
    return problems


def venv_copied_between_equal_bases(stages: list[Stage]) -> list[str]:
    by_alias = {stage.alias: stage for stage in stages if stage.alias}
    problems = []
    for stage in stages:
        for copy in stage.all("COPY"):
            match = re.search(r"--from=(\S+)", copy.value)
            source = by_alias.get(match[1]) if match else None
            if source is not None and source.base != stage.base:
                problems.append(f"line {copy.line}: copies from {source.base} into {stage.base}")
    return problems


RULES: tuple[Callable[[list[Stage]], list[str]], ...] = (
    pinned_base_images,
    runs_as_numeric_non_root,
    has_python_healthcheck,
    no_remote_add,
    pip_without_cache,
    apt_lists_cleaned,
    exec_form_entrypoint,
    expose_matches_listen_port,
    venv_copied_between_equal_bases,
)


def lint(text: str) -> list[str]:
    """Every problem every rule finds in a Dockerfile's text."""
    stages = parse_stages(text)
    if not stages:
        return ["no FROM instruction"]
    return [problem for rule in RULES for problem in rule(stages)]
