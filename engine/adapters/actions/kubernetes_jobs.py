"""Live backend for ``create_job``: a Job (retraining, typically) made from a suspended CronJob's job template.

A suspended CronJob is the Kubernetes-native place for a Job template (``kubectl create job --from=cronjob/...``
does the same): operators keep it in their manifests and the engine needs only ``get`` on it. The Job is named from
the request's idempotency key, so a repeated or recovered request finds the Job it already made, and labelled with
the model and template, so a second incident about the same model finds the retraining already running and does
not start another.
"""

from __future__ import annotations

import hashlib
import re

from engine.adapters.actions.failures import expect_params
from engine.adapters.actions.kubernetes_api import Json, KubernetesApi, is_already_exists, is_not_found
from engine.core.actions.catalogue import ActionParams, CreateJobParams
from engine.domain.errors import EngineError
from engine.domain.events import ActionRequest

LABEL_MODEL = "aiops-engine.io/model"
LABEL_TEMPLATE = "aiops-engine.io/job-template"
LABEL_INCIDENT = "aiops-engine.io/incident"
ANNOTATION_KEY = "aiops-engine.io/action-key"


def job_name(template: str, key: str) -> str:
    """A DNS-1123 name, stable for one request: the template's name and a digest of the idempotency key."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{template[:52].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` made a valid label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63]
    return cleaned.strip("._-")


class CreateJobBackend:
    def __init__(self, api: KubernetesApi) -> None:
        self._api = api

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, CreateJobParams)
        name = job_name(params.template, request.id)
        running = await self._running_for_model(params)
        if running and name not in running:
            return (
                f"job {running[0]} for model {params.model} is still running in {params.namespace}; "
                "not starting another"
            )
        template = await self._api.call(
            f"read cronjob {params.namespace}/{params.template}",
            self._api.batch.read_namespaced_cron_job,
            params.template,
            params.namespace,
        )
        body = self._job(params, request, name, template)
        try:
            await self._api.call(
                f"create job {params.namespace}/{name}", self._api.batch.create_namespaced_job, params.namespace, body
            )
        except EngineError as exc:
            if not is_already_exists(exc):
                raise
            return f"job {params.namespace}/{name} was already created for this incident"
        return f"created job {params.namespace}/{name} from cronjob {params.template} for model {params.model}"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, CreateJobParams)
        name = job_name(params.template, request.id)
        try:
            await self._api.call(
                f"delete job {params.namespace}/{name}",
                self._api.batch.delete_namespaced_job,
                name,
                params.namespace,
                propagation_policy="Background",
            )
        except EngineError as exc:
            if not is_not_found(exc):
                raise
            return f"job {params.namespace}/{name} was already gone"
        return f"deleted job {params.namespace}/{name} and its pods"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        params = expect_params(params, CreateJobParams)
        name = job_name(params.template, request.id)
        try:
            await self._api.call(
                f"read job {params.namespace}/{name}", self._api.batch.read_namespaced_job, name, params.namespace
            )
        except EngineError as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    async def _running_for_model(self, params: CreateJobParams) -> list[str]:
        """Names of the unfinished Jobs from this template for this model."""
        selector = f"{LABEL_MODEL}={label_value(params.model)},{LABEL_TEMPLATE}={label_value(params.template)}"
        jobs = await self._api.call(
            f"list jobs in {params.namespace}",
            self._api.batch.list_namespaced_job,
            params.namespace,
            label_selector=selector,
        )
        return [str(job["metadata"]["name"]) for job in jobs.get("items", []) if not _finished(job)]

    def _job(self, params: CreateJobParams, request: ActionRequest, name: str, cronjob: Json) -> Json:
        template = cronjob["spec"]["jobTemplate"]
        metadata = template.get("metadata") or {}
        labels = {
            **(metadata.get("labels") or {}),
            LABEL_MODEL: label_value(params.model),
            LABEL_TEMPLATE: label_value(params.template),
            LABEL_INCIDENT: label_value(request.incident_id),
        }
        annotations = {**(metadata.get("annotations") or {}), ANNOTATION_KEY: request.id}
        spec = template["spec"]
        env = [
            {"name": "AIOPS_MODEL_NAME", "value": params.model},
            {"name": "AIOPS_MODEL_VERSION", "value": params.model_version or ""},
            {"name": "AIOPS_INCIDENT_ID", "value": request.incident_id},
        ]
        for container in spec["template"]["spec"]["containers"]:
            kept = [item for item in container.get("env") or [] if item["name"] not in {e["name"] for e in env}]
            container["env"] = kept + env
        pod_labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
        pod_labels.update({LABEL_MODEL: labels[LABEL_MODEL], LABEL_INCIDENT: labels[LABEL_INCIDENT]})
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": params.namespace, "labels": labels, "annotations": annotations},
            "spec": spec,
        }


def _finished(job: Json) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
