"""The engine's edges: storage, sources, the HTTP API, metrics and files. Each wraps one outside library."""
