"""The HTTP API (FastAPI): health, incidents, actions and the engine's Prometheus metrics."""
