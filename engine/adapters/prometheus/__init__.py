"""Prometheus integration: remote_write decoding and the PromQL polling client."""
