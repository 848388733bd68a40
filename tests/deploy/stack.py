"""Read-only views of the deployment files (compose.yaml, .env.example, .dockerignore) for the static tests."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
AIOPS_NAME = re.compile(r"\bAIOPS_[A-Z0-9_]+\b")


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def env_example() -> dict[str, str]:
    """The variables .env.example lists, with their example values."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, resolved as ``docker compose`` does."""

    def replace(match: re.Match[str]) -> str:
        value = environ.get(match["name"], "")
        if match["op"] in {":-", "-"} and not value:
            return match["arg"]
        if match["op"] in {":?", "?"} and not value:
            raise KeyError(f"{match['name']} is required: {match['arg']}")
        return value

    return INTERPOLATION.sub(replace, text)


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    bind: bool


def mounts(service: dict[str, Any]) -> list[Mount]:
    """The service's volumes (short syntax ``source:target[:mode]`` or long syntax) as source/target pairs."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found.append(Mount(source, target, bind=source.startswith((".", "/"))))
    return found


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {str(key): "" if value is None else str(value) for key, value in environment.items()}


def host_port(value: str) -> tuple[str, int] | None:
    """``host:port`` of a URL or of a bare ``host:port`` address (``None`` for anything else)."""
    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def stage_container_files(service: dict[str, Any], root: Path) -> None:
    """Lay the service's bind mounts from the repository under ``root`` as the container would see them."""
    for mount in mounts(service):
        if not mount.bind:
            continue
        source = (REPO / mount.source).resolve()
        target = root / PurePosixPath(mount.target).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression over slash paths."""
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "[" and "]" in pattern[index:]:
            end = pattern.index("]", index)
            out += pattern[index : end + 1]
            index = end + 1
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[index], re.escape(pattern[index]))
            index += 1
    return re.compile(out)


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) for each line, in order; the last pattern that matches decides."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").strip().strip("/")
        patterns.append((negated, _pattern_regex(line)))
    return patterns


def in_build_context(path: str, text: str) -> bool:
    """Whether Docker sends ``path`` (relative to the context) to the builder, as it evaluates .dockerignore: a
    pattern that matches the path or one of its parent folders excludes (or, with ``!``, re-includes) it."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    included = True
    for negated, pattern in dockerignore_patterns(text):
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included
