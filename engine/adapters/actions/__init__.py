"""Live backends for the action catalogue: each talks to one real system (Kubernetes, MLflow, Alertmanager,
Grafana, webhooks), records the request's idempotency key on what it changes, and maps the system's errors onto
the engine's temporary/permanent errors so the executor knows what to retry."""
