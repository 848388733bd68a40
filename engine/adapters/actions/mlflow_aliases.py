"""Live backends for mlflow_rollback_alias and mlflow_rollback_prompt: rolling an MLflow alias back to an earlier
version of a registered model or of a prompt (MLflow 3 prompt registry).

An alias (``champion``, ``production``) is what serving resolves, so rolling back is re-pointing it. The registry
keeps no alias history, so each move is recorded on the model or prompt itself: the tag
``aiops.alias-history.<alias>`` holds the last moves as JSON (the request's idempotency key, the incident, the
version before and after), and the version rolled back from gets the tag ``aiops.rolled-back-by`` so that the next
rollback skips it. The record is written before the alias moves: after a crash the alias has either not moved
(the step runs again and finishes the recorded move) or it points at the recorded version (``applied`` is True).

The two registries differ only in which client methods they call; one table per registry says which.

MLflow's HTTP client retries failed requests for minutes and takes that policy only from the process environment
(it reads ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` on every request, with no
per-client setting). The engine's executor already retries temporary failures with backoff, so the process that
runs these backends should apply ``FAIL_FAST_ENVIRONMENT`` at start-up; without it an unreachable server holds a
step until the executor's timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS, MlflowException
from mlflow.tracking import MlflowClient
from requests.exceptions import RequestException

from engine.adapters.actions.failures import error_for_status, expect_params, is_temporary_status
from engine.core.actions.catalogue import ActionParams, MlflowRollbackAliasParams, MlflowRollbackPromptParams
from engine.domain.clock import Clock, SystemClock
from engine.domain.errors import EngineError, PermanentError, TemporaryError
from engine.domain.events import ActionRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

HISTORY_TAG = "aiops.alias-history."
ROLLED_BACK_BY = "aiops.rolled-back-by"
KEEP = 20
# Tag values stay below the smallest limit of the registries MLflow supports, not just the OSS server's 100 000.
MAX_HISTORY_CHARS = 5000
READY = "READY"

FAIL_FAST_ENVIRONMENT: Mapping[str, str] = MappingProxyType(
    {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
)


@dataclass(frozen=True)
class _Target:
    name: str
    alias: str
    to_version: int | None


@dataclass(frozen=True)
class _State:
    """Where the alias points now, and the tags of the model or prompt."""

    current: int
    tags: Mapping[str, str]


@dataclass(frozen=True)
class _Version:
    number: int
    ready: bool
    tags: Mapping[str, str]


@dataclass(frozen=True)
class _Move:
    """One recorded move of the alias, by the request whose idempotency key is ``key``."""

    key: str
    incident: str
    before: int
    after: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "incident": self.incident, "from": self.before, "to": self.after, "at": self.at}

    @classmethod
    def from_json(cls, raw: Any) -> _Move | None:
        try:
            return cls(str(raw["key"]), str(raw["incident"]), int(raw["from"]), int(raw["to"]), float(raw["at"]))
        except (KeyError, TypeError, ValueError):
            return None  # an entry edited by hand is skipped rather than failing every later rollback


@dataclass(frozen=True)
class _Registry:
    """The client calls for one kind of registered thing; the rollback logic is the same for both."""

    noun: str
    target: Callable[[ActionParams], _Target]
    read: Callable[[MlflowClient, str, str], _State]
    versions: Callable[[MlflowClient, str], list[_Version]]
    set_alias: Callable[[MlflowClient, str, str, int], object]
    set_tag: Callable[[MlflowClient, str, str, str], object]
    set_version_tag: Callable[[MlflowClient, str, int, str, str], object]
    delete_version_tag: Callable[[MlflowClient, str, int, str], object]


def _model_target(params: ActionParams) -> _Target:
    model = expect_params(params, MlflowRollbackAliasParams)
    return _Target(model.model, model.alias, model.to_version)


def _model_state(client: MlflowClient, name: str, alias: str) -> _State:
    model = client.get_registered_model(name)
    if alias not in model.aliases:
        raise PermanentError(f"MLflow model {name} has no alias {alias!r}; there is nothing to roll back")
    return _State(int(model.aliases[alias]), dict(model.tags))


def _model_versions(client: MlflowClient, name: str) -> list[_Version]:
    found: list[_Version] = []
    token: str | None = None
    while True:
        page = client.search_model_versions(f"name = {_quoted(name)}", page_token=token)
        found += [_Version(int(v.version), v.status == READY, dict(v.tags)) for v in page]
        token = page.token
        if not token:
            return found


def _prompt_target(params: ActionParams) -> _Target:
    prompt = expect_params(params, MlflowRollbackPromptParams)
    return _Target(prompt.prompt, prompt.alias, prompt.to_version)


def _prompt_state(client: MlflowClient, name: str, alias: str) -> _State:
    version = client.get_prompt_version_by_alias(name, alias)
    # get_prompt answers None for any failure, not only for a missing prompt; the alias was just read, so the
    # prompt exists and None means the second request failed.
    prompt = client.get_prompt(name)
    if prompt is None:
        raise TemporaryError(f"could not read the tags of MLflow prompt {name}")
    return _State(int(version.version), prompt.tags)


def _prompt_versions(client: MlflowClient, name: str) -> list[_Version]:
    found: list[_Version] = []
    token: str | None = None
    while True:
        page = client.search_prompt_versions(name, page_token=token)
        # Prompt versions are created complete: there is no pending or failed registration.
        found += [_Version(int(v.version), True, dict(v.tags)) for v in page]
        token = page.token
        if not token:
            return found


MODEL = _Registry(
    noun="MLflow model",
    target=_model_target,
    read=_model_state,
    versions=_model_versions,
    set_alias=lambda client, name, alias, version: client.set_registered_model_alias(name, alias, str(version)),
    set_tag=lambda client, name, key, value: client.set_registered_model_tag(name, key, value),
    set_version_tag=lambda client, name, version, key, value: client.set_model_version_tag(
        name, str(version), key, value
    ),
    delete_version_tag=lambda client, name, version, key: client.delete_model_version_tag(name, str(version), key),
)

PROMPT = _Registry(
    noun="MLflow prompt",
    target=_prompt_target,
    read=_prompt_state,
    versions=_prompt_versions,
    set_alias=lambda client, name, alias, version: client.set_prompt_alias(name, alias, version),
    set_tag=lambda client, name, key, value: client.set_prompt_tag(name, key, value),
    set_version_tag=lambda client, name, version, key, value: client.set_prompt_version_tag(name, version, key, value),
    delete_version_tag=lambda client, name, version, key: client.delete_prompt_version_tag(name, version, key),
)


class _AliasRollbackBackend:
    registry: ClassVar[_Registry]

    def __init__(self, tracking_uri: str, *, registry_uri: str | None = None, clock: Clock | None = None) -> None:
        self._uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
        self._clock = clock or SystemClock()
        missing = sorted(set(FAIL_FAST_ENVIRONMENT) - set(os.environ))
        if missing:
            log.warning(
                "%s is not set: the MLflow client retries an unreachable server for minutes before the engine "
                "sees the failure",
                ", ".join(missing),
            )

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        target = self.registry.target(params)
        label = self._label(target)
        state = await self._read(target)
        earlier = _find(_history(state.tags, target.alias), request.id)
        if earlier is not None and state.current == earlier.after:
            return (
                f"{label} already points at version {earlier.after}, moved there from version {earlier.before} "
                "for this step; nothing to do"
            )
        if earlier is not None and state.current == earlier.before:
            move = earlier  # the record was written but the alias did not move before a crash: finish that move
        else:
            version = await self._choose(target, state.current)
            if version == state.current:
                return f"{label} already points at version {version}; nothing to do"
            move = _Move(request.id, request.incident_id, state.current, version, self._clock.now())
            await self._record(target, state.tags, move)
        await self._call(
            f"mark version {move.before} of {self._thing(target)} as rolled back from",
            self.registry.set_version_tag,
            target.name,
            move.before,
            ROLLED_BACK_BY,
            request.id,
        )
        await self._move(target, move.after)
        return f"moved {label} from version {move.before} to {move.after}"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        target = self.registry.target(params)
        label = self._label(target)
        state = await self._read(target)
        move = _find(_history(state.tags, target.alias), request.id)
        if move is None:
            raise PermanentError(f"cannot undo: no move of {label} is recorded for this step")
        if state.current == move.before:
            return f"{label} points at version {move.before} again; nothing to undo"
        if state.current != move.after:
            raise PermanentError(
                f"cannot undo: {label} now points at version {state.current}, not at version {move.after} that "
                "this step set; someone moved it since, so it is left alone"
            )
        back = _Move(f"{request.id}/undo", request.incident_id, move.after, move.before, self._clock.now())
        await self._record(target, state.tags, back)
        versions = await self._versions(target)
        marked = next((v for v in versions if v.number == move.before), None)
        # Only this step's mark is cleared: a later rollback from the same version keeps it marked.
        if marked is not None and marked.tags.get(ROLLED_BACK_BY) == request.id:
            await self._call(
                f"clear the rolled-back mark of version {move.before} of {self._thing(target)}",
                self.registry.delete_version_tag,
                target.name,
                move.before,
                ROLLED_BACK_BY,
            )
        await self._move(target, move.before)
        return f"moved {label} back from version {move.after} to {move.before}"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        target = self.registry.target(params)
        state = await self._read(target)
        move = _find(_history(state.tags, target.alias), request.id)
        return move is not None and state.current == move.after

    async def _read(self, target: _Target) -> _State:
        return await self._call(f"read {self._label(target)}", self.registry.read, target.name, target.alias)

    async def _versions(self, target: _Target) -> list[_Version]:
        return await self._call(f"list the versions of {self._thing(target)}", self.registry.versions, target.name)

    async def _choose(self, target: _Target, current: int) -> int:
        """The version to roll back to: the one the step names (even one rolled back from before: a person chose
        it), else the newest earlier version that is ready and was never rolled back from."""
        versions = await self._versions(target)
        thing = self._thing(target)
        if target.to_version is not None:
            named = next((v for v in versions if v.number == target.to_version), None)
            if named is None:
                raise PermanentError(f"{thing} has no version {target.to_version} to roll back to")
            if not named.ready:
                raise PermanentError(f"version {target.to_version} of {thing} is not ready; not rolling back to it")
            return named.number
        good = [v.number for v in versions if v.number < current and v.ready and ROLLED_BACK_BY not in v.tags]
        if not good:
            raise PermanentError(
                f"cannot roll back {self._label(target)}: no version before {current} is ready and not already "
                "rolled back from"
            )
        return max(good)

    async def _record(self, target: _Target, tags: Mapping[str, str], move: _Move) -> None:
        key = HISTORY_TAG + target.alias
        value = _with_move(_history(tags, target.alias), move)
        await self._call(f"record the move of {self._label(target)}", self.registry.set_tag, target.name, key, value)

    async def _move(self, target: _Target, version: int) -> None:
        await self._call(
            f"point {self._label(target)} at version {version}",
            self.registry.set_alias,
            target.name,
            target.alias,
            version,
        )

    async def _call(self, what: str, function: Callable[..., T], *args: Any) -> T:
        """``function(client, *args)`` in a worker thread, its failures mapped onto the engine's errors."""
        try:
            return await asyncio.to_thread(function, self._client, *args)
        except MlflowException as exc:
            raise _engine_error(exc, what, self._uri) from exc
        except (RequestException, OSError) as exc:
            raise TemporaryError(f"{what}: no answer from MLflow at {self._uri} ({type(exc).__name__})") from exc

    def _thing(self, target: _Target) -> str:
        return f"{self.registry.noun} {target.name}"

    def _label(self, target: _Target) -> str:
        return f"{self.registry.noun} {target.name}@{target.alias}"


class MlflowModelAliasBackend(_AliasRollbackBackend):
    """Live backend of ``mlflow_rollback_alias``: moves a registered model's alias back to an earlier version."""

    registry = MODEL


class MlflowPromptAliasBackend(_AliasRollbackBackend):
    """Live backend of ``mlflow_rollback_prompt``: moves a prompt's alias back to an earlier version."""

    registry = PROMPT


def _history(tags: Mapping[str, str], alias: str) -> list[_Move]:
    raw = tags.get(HISTORY_TAG + alias)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [move for move in map(_Move.from_json, entries) if move is not None]


def _find(history: Sequence[_Move], key: str) -> _Move | None:
    return next((move for move in reversed(history) if move.key == key), None)


def _with_move(history: Sequence[_Move], move: _Move) -> str:
    """The history as the tag's JSON with ``move`` last; the oldest moves drop out beyond KEEP or the size limit."""
    kept = [*[m for m in history if m.key != move.key][-(KEEP - 1) :], move]
    while True:
        value = json.dumps([m.to_json() for m in kept], separators=(",", ":"))
        if len(value) <= MAX_HISTORY_CHARS or len(kept) == 1:
            return value
        kept = kept[1:]


def _quoted(name: str) -> str:
    """``name`` as a string literal of MLflow's search syntax (which has no escapes: pick the quote it lacks)."""
    quote = "'" if "'" not in name else '"'
    if quote in name:
        raise PermanentError(f"MLflow cannot search for a name with both kinds of quote: {name!r}")
    return f"{quote}{name}{quote}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _engine_error(exc: MlflowException, what: str, uri: str) -> EngineError:
    """The engine error for a failed MLflow call.

    The client wraps connection failures in a plain MlflowException (code INTERNAL_ERROR, so HTTP 500), and the
    prompt API relabels any failure of its existence check as RESOURCE_DOES_NOT_EXIST; the original failure stays
    in the exception chain, so the chain decides whether retrying can help.
    """
    causes = list(_causes(exc))
    unreachable = next((cause for cause in causes if isinstance(cause, RequestException)), None)
    if unreachable is not None:
        return TemporaryError(f"{what}: no answer from MLflow at {uri} ({type(unreachable).__name__})")
    statuses = [ERROR_CODE_TO_HTTP_STATUS.get(c.error_code, 500) for c in causes if isinstance(c, MlflowException)]
    status = next((s for s in statuses if is_temporary_status(s)), statuses[0])
    error = error_for_status(status, what)
    return type(error)(f"{error}: {exc.message}")
