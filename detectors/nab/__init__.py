"""Scoring detectors with the Numenta Anomaly Benchmark (NAB v1.1): corpus loading and the NAB scoring rules."""
