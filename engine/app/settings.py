"""Every setting of the engine, read from ``AIOPS_*`` environment variables (pydantic-settings).

An ``AIOPS_*`` variable that matches no setting is an error, not silently ignored: a typo in a deployment should
fail loudly at start-up.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.adapters.actions.pagerduty import RoutingKeys
from engine.adapters.web.sessions import DEFAULT_LIFETIME_S
from engine.domain.errors import ConfigurationError
from engine.domain.events import ActionMode

ENV_PREFIX = "AIOPS_"
BUNDLED_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "serving_stack_in_trouble"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///.aiops/engine.db",
        description="SQLAlchemy async URL of the store; the embedded default is a SQLite file",
    )
    store_outage_limit_s: float = Field(
        default=300.0,
        gt=0,
        description="how long the engine waits for an unreachable store (ingestion paused, retrying) before it "
        "exits with status 3",
    )
    scenario_dir: Path = Field(default=BUNDLED_SCENARIO, description="replay scenario to run in embedded mode")
    playbook_dir: Path = Field(default=Path("playbooks"), description="directory of playbook YAML files")
    http_host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    http_port: int = Field(default=8080, ge=0, le=65535, description="port of the HTTP API (0: any free port)")
    mode: ActionMode = Field(default=ActionMode.DRY_RUN, description="global action mode: live, dry-run or shadow")
    detector: str = Field(default="default", description="detector family used for every series")
    detector_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="score at which a point is anomalous (default: the detector's)",
    )
    replay_speed: float = Field(
        default=2880.0, gt=0, description="event seconds replayed per wall-clock second by `aiops run`"
    )
    incident_min_signals: int = Field(
        default=1,
        ge=1,
        description="anomalies needed within the open window to open an incident (the default detector already "
        "reports one or a few detections per anomaly)",
    )
    incident_open_window_s: float = Field(default=600.0, gt=0, description="window for incident_min_signals")
    incident_resolve_after_s: float = Field(
        default=900.0, gt=0, description="quiet time after which an incident resolves"
    )
    api_tokens: str = Field(
        default="",
        description="API tokens as name:role:sha256,... (roles viewer, responder, admin; "
        "`aiops token NAME --role ROLE` makes one); when empty, `aiops run` prints a one-off admin token",
    )
    ui_session_s: float = Field(
        default=DEFAULT_LIFETIME_S,
        gt=0,
        le=7 * 86400.0,
        description="how long a login to the on-call page (/ui/) lasts, in seconds; then it asks for the token again",
    )
    ui_session_secret: str = Field(
        default="",
        pattern=r"^(|.{32,})$",
        description="key (32+ characters) that signs the on-call page's session cookies; empty: a random one at "
        "each start, so restarts log everyone out. Give every replica the same key so a login works on all of them",
    )
    playbook_reload_s: float = Field(
        default=5.0, ge=0, description="how often the engine checks the playbook directory for changes (0: never)"
    )
    ingest_bearer_sha256: str = Field(
        default="",
        description="SHA-256 of the bearer token Alertmanager's webhook and Prometheus remote_write present "
        "(`/api/v1/alerts`, `/api/v1/write` exist only when this or AIOPS_INGEST_BASIC_AUTH is set)",
    )
    ingest_basic_auth: str = Field(
        default="", description="basic auth for the same endpoints, as user:sha256-of-password"
    )
    kafka_bootstrap: str = Field(
        default="", description="Kafka bootstrap servers (host:port,...) of `aiops serve`, the Kafka-driven engine"
    )
    kafka_topics: str = Field(default="aiops.samples", description="comma-separated topics of metric samples")
    kafka_topic_formats: str = Field(
        default="",
        description="message format of each topic as topic=format,... (json, otlp_proto, otlp_json, "
        "prometheus_adapter_json, influx_line); topics not named carry the engine's own json",
    )
    kafka_group_id: str = Field(default="aiops-engine", description="consumer group the engine's replicas share")
    kafka_dead_letter_topic: str = Field(
        default="aiops.samples.dead-letter", description="where malformed or invalid sample messages go"
    )
    kafka_anomaly_topic: str = Field(default="aiops.anomalies", description="topic of detected anomalies (JSON)")
    kafka_incident_topic: str = Field(default="aiops.incidents", description="topic of incident changes (JSON)")
    kafka_action_topic: str = Field(default="aiops.actions", description="topic of action results (JSON)")
    kafka_max_batch: int = Field(
        default=10000, ge=1, description="most Kafka records consumed into one detection batch"
    )
    kafka_connect_limit_s: float = Field(
        default=300.0,
        ge=0,
        description="how long `aiops serve` keeps trying to reach its brokers at start (a broker restarting) before "
        "it exits with status 3; 0: one try",
    )
    kafka_max_message_bytes: int = Field(
        default=1048576,
        ge=1024,
        description="largest Kafka sample message (value and key) taken; a larger one goes to the dead-letter topic",
    )
    max_series: int = Field(
        default=100000,
        ge=1,
        description="most series one engine process keeps state for; samples of new series past it are refused "
        "(remote_write answers 400, Kafka dead-letters them) and counted in aiops_series_refused_total",
    )
    max_labels_per_series: int = Field(
        default=64, ge=1, description="most labels a series or an alert may have (more: refused)"
    )
    max_label_name_length: int = Field(default=256, ge=1, description="longest label name taken (longer: refused)")
    max_label_value_length: int = Field(
        default=1024, ge=1, description="longest label value (and metric name) taken, in characters (longer: refused)"
    )
    max_title_length: int = Field(
        default=512, ge=16, description="incident titles longer than this many characters are stored clipped"
    )
    max_annotation_length: int = Field(
        default=4096, ge=16, description="alert annotations longer than this many characters are stored clipped"
    )
    alert_max_body_bytes: int = Field(
        default=10485760, ge=1024, description="largest Alertmanager notification body taken (larger: 413)"
    )
    remote_write_max_body_bytes: int = Field(
        default=8388608, ge=1024, description="largest remote_write body taken, compressed (larger: 413)"
    )
    remote_write_max_decoded_bytes: int = Field(
        default=33554432,
        ge=1024,
        description="largest remote_write body taken once decompressed, read from its snappy header before "
        "decompressing (larger: 413)",
    )
    otlp_max_decoded_bytes: int = Field(
        default=2097152,
        ge=1024,
        description="largest OTLP/HTTP body taken once decompressed (larger: 413); parsed, each byte can cost up to "
        "about 25 bytes of memory",
    )
    remote_write_max_samples: int = Field(
        default=100000, ge=1, description="most samples one remote_write request may carry (more: 413)"
    )
    prometheus_url: str = Field(
        default="", description="Prometheus that `aiops watch` polls with the PromQL queries of AIOPS_PROMQL_QUERIES"
    )
    promql_queries: str = Field(
        default="",
        description='signals `aiops watch` polls, as JSON: [{"signal": "...", "query": "...", "missing": '
        '"hold|anomalous|ignore"}, ...]; each result label set becomes a series `<signal>{labels}`',
    )
    promql_interval_s: float = Field(default=15.0, gt=0, description="seconds between two polls of every query")
    promql_backfill_s: float = Field(
        default=3600.0, ge=0, description="history read with query_range at start, so detectors are warm at once"
    )
    kubeconfig: str = Field(
        default="",
        description="kubeconfig file of the cluster the Kubernetes actions change, or `in-cluster` for the pod's "
        "service account; empty: Kubernetes actions have no live backend (they fail in live mode)",
    )
    kube_context: str = Field(default="", description="context of the kubeconfig to use (default: its current one)")
    mlflow_tracking_uri: str = Field(
        default="", description="MLflow tracking/registry server the model and prompt alias rollbacks change"
    )
    alertmanager_url: str = Field(
        default="", description="Alertmanager that `alertmanager_silence` creates silences in"
    )
    grafana_url: str = Field(default="", description="Grafana that `grafana_annotate` annotates")
    grafana_token: str = Field(default="", description="Grafana service-account token for `grafana_annotate`")
    # -- paging (PagerDuty Events API v2, links to the on-call page) --
    pagerduty_routing_key: SecretStr = Field(
        default=SecretStr(""),
        description="routing (integration) key of the PagerDuty service that incidents page: every incident is "
        "triggered, acknowledged and resolved there (see Notifications); empty: no PagerDuty events",
    )
    pagerduty_routing_keys: SecretStr = Field(
        default=SecretStr(""),
        description="more routing keys by name, as name=key,...: a playbook's `pagerduty_trigger` names one in "
        "`routing_key` (`default` is AIOPS_PAGERDUTY_ROUTING_KEY)",
    )
    pagerduty_url: str = Field(
        default="https://events.pagerduty.com",
        pattern=r"^https?://",
        description="base URL of PagerDuty's Events API v2 (`/v2/enqueue` is appended)",
    )
    public_url: str = Field(
        default="",
        pattern=r"^(|https?://.+)$",
        description="the engine's address as people reach it (e.g. https://aiops.example.com): PagerDuty events "
        "and Teams cards link to the incident's on-call page there; empty: no links",
    )

    @field_validator("pagerduty_routing_keys")
    @classmethod
    def _usable_routing_keys(cls, named: SecretStr) -> SecretStr:
        try:
            RoutingKeys.parse(SecretStr(""), named)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return named

    # -- end of paging --
    action_timeout_s: float = Field(
        default=30.0, gt=0, description="longest one call of a live action may take before it is retried"
    )
    action_attempts: int = Field(
        default=3, ge=1, description="tries of a live action that fails with a temporary error (409, 429, 5xx)"
    )
    remediation_workers: int = Field(
        default=4, ge=1, le=64, description="steps carried out at once (one at a time per target), off the ingest path"
    )
    replica_id: str = Field(
        default="",
        max_length=128,
        description="this replica's name in the action ledger's leases; a restart under the same name takes over "
        "its unfinished steps at once (others wait for the lease to run out); empty: host:pid",
    )
    log_level: str = Field(default="WARNING", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="log level")


def check_environment(environ: Mapping[str, str]) -> None:
    """Reject ``AIOPS_*`` variables that name no setting, suggesting the closest one."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for variable in sorted(environ):
        if variable.upper().startswith(ENV_PREFIX) and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigurationError(f"unknown setting {variable}{hint}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with ``overrides`` (e.g. from command-line options) taking precedence."""
    environ = os.environ if environ is None else environ
    check_environment(environ)
    try:
        if environ is os.environ:
            return Settings(**overrides)  # type: ignore[arg-type]
        # Settings reads os.environ itself; for an explicit mapping, pass the values in by field name.
        values = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in Settings.model_fields
            if ENV_PREFIX + name.upper() in environ
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"invalid setting {ENV_PREFIX}{field.upper()}: {first['msg']}") from exc


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting; the README's table is generated from this."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path) and default.is_absolute():
            default = "(bundled scenario)"
        rows.append((ENV_PREFIX + name.upper(), str(default), field.description or ""))
    return rows


def settings_markdown() -> str:
    """The README's settings table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{var}` | `{default}` | {text} |" for var, default, text in settings_table()]
    return "\n".join(lines)
