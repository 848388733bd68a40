"""Kafka edges of the engine: metric samples consumed from topics, events published to topics."""
