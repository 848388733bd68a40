"""OpenTelemetry metrics (OTLP): requests decoded and flattened into the engine's series."""
