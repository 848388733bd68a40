"""Where samples come from: the bundled replay (embedded mode); Kafka and Prometheus sources plug in beside it."""
