"""aiops-engine: online anomaly detection and safe auto-remediation around ML serving."""
