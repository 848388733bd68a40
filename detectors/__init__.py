"""Online anomaly detectors: a leaf library with one per-series contract and a vectorised batch path."""
