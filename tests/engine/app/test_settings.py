import pytest

from engine.app.kafka_engine import kafka_source_config
from engine.app.settings import load_settings, settings_table
from engine.domain.errors import ConfigurationError
from engine.domain.events import ActionMode


def test_defaults_are_embedded_and_safe() -> None:
    settings = load_settings({})
    assert settings.mode is ActionMode.DRY_RUN
    assert settings.database_url.startswith("sqlite")
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)


def test_environment_values_are_read_and_typed() -> None:
    settings = load_settings({"AIOPS_HTTP_PORT": "9999", "AIOPS_MODE": "shadow", "PATH": "/bin"})
    assert settings.http_port == 9999
    assert settings.mode is ActionMode.SHADOW


def test_unknown_setting_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting AIOPS_HTTP_PRT \(did you mean AIOPS_HTTP_PORT\?\)"):
        load_settings({"AIOPS_HTTP_PRT": "1"})


def test_invalid_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="invalid setting AIOPS_HTTP_PORT"):
        load_settings({"AIOPS_HTTP_PORT": "eighty"})


def test_every_setting_is_documented() -> None:
    for variable, _default, description in settings_table():
        assert variable.startswith("AIOPS_")
        assert description


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AIOPS_UI_SESSION_SECRET", "shorter-than-32-characters"),
        ("AIOPS_UI_SESSION_S", "0"),
        ("AIOPS_UI_SESSION_S", "1e9"),
    ],
)
def test_page_sessions_need_a_long_key_and_a_bounded_lifetime(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid setting {variable}"):
        load_settings({variable: value})


def test_topic_formats_are_read_and_checked_against_the_topics_at_start() -> None:
    environ = {"AIOPS_KAFKA_BOOTSTRAP": "localhost:9092", "AIOPS_KAFKA_TOPICS": "aiops.samples,otel"}
    config = kafka_source_config(load_settings({**environ, "AIOPS_KAFKA_TOPIC_FORMATS": "otel=otlp_proto"}))
    assert dict(config.formats) == {"aiops.samples": "json", "otel": "otlp_proto"}
    with pytest.raises(ConfigurationError, match="topic 'telegraf' is not in AIOPS_KAFKA_TOPICS"):
        kafka_source_config(load_settings({**environ, "AIOPS_KAFKA_TOPIC_FORMATS": "telegraf=influx_line"}))
