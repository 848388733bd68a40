"""Runnable benchmarks (`python -m benchmarks.<name>`) that print measured figures; not collected by pytest."""
