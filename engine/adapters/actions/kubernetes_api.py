"""The engine's connection to a Kubernetes API server, and the one place where the client's errors become ours.

The official client is synchronous: every call runs in a worker thread so the event loop keeps going. The client
does not retry on its own (urllib3 retries are off); the executor retries temporary errors with backoff, so a call
that a conflict (409) or an overloaded server (429, 5xx) refused is read again and re-applied, never blindly resent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from engine.adapters.actions.failures import error_for_status
from engine.domain.errors import EngineError, TemporaryError

Json = dict[str, Any]

# Seconds one HTTP request to the API server may take (connect, read) before it counts as a temporary failure.
REQUEST_TIMEOUT = (5.0, 20.0)


@dataclass(frozen=True)
class KubernetesApi:
    """Typed handles on the API groups the actions use, over one shared connection pool."""

    api_client: client.ApiClient

    @classmethod
    def connect(cls, kubeconfig: Path | None, context: str | None = None) -> KubernetesApi:
        """From a kubeconfig file, or from the pod's service account when ``kubeconfig`` is None."""
        configuration = client.Configuration()
        # The loaders are untyped in the client; naming their type here keeps the calls checked.
        load_in_cluster: Callable[..., None] = config.load_incluster_config
        load_kubeconfig: Callable[..., None] = config.load_kube_config
        if kubeconfig is None:
            load_in_cluster(client_configuration=configuration)
        else:
            load_kubeconfig(
                config_file=str(kubeconfig), context=context, client_configuration=configuration, persist_config=False
            )
        configuration.retries = 0
        return cls(client.ApiClient(configuration))

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api_client)

    @property
    def autoscaling(self) -> client.AutoscalingV2Api:
        return client.AutoscalingV2Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        close: Callable[[], None] = self.api_client.close
        close()
        # ApiClient.close stops its thread pool but leaves the HTTP connections to the garbage collector.
        self.api_client.rest_client.pool_manager.clear()

    async def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
        """``function(*args, **kwargs)`` in a worker thread, its failures mapped onto the engine's errors.

        The answer is the API server's JSON as it came (camelCase keys), not the client's model objects: the actions
        edit objects and send them back whole, and plain JSON round-trips exactly.
        """
        try:
            response = await asyncio.to_thread(
                function, *args, _request_timeout=REQUEST_TIMEOUT, _preload_content=False, **kwargs
            )
            body = response.data
            response.release_conn()
        except ApiException as exc:
            raise _api_error(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise TemporaryError(f"{what}: cannot reach the Kubernetes API server ({exc.__class__.__name__})") from exc
        decoded: Json = json.loads(body) if body else {}
        return decoded


def _api_error(exc: ApiException, what: str) -> EngineError:
    error = error_for_status(int(exc.status or 0), what)
    reason = _reason(exc)
    return type(error)(f"{error}: {reason}") if reason else error


def _reason(exc: ApiException) -> str:
    """The API server's own sentence (``Status.message``), which says e.g. which verb RBAC refused."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.startswith("{"):
        try:
            message = json.loads(body).get("message")
        except ValueError:
            return str(exc.reason or "")
        return str(message or exc.reason or "")
    return str(exc.reason or "")


def is_not_found(exc: EngineError) -> bool:
    return isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404


def is_conflict(exc: BaseException) -> bool:
    """A write refused because the object changed since it was read (resourceVersion mismatch)."""
    cause = exc.__cause__
    return isinstance(exc, EngineError) and isinstance(cause, ApiException) and cause.status == 409


def is_already_exists(exc: EngineError) -> bool:
    return isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 409
