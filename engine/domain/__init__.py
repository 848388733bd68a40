"""Immutable values and small abstractions shared by every layer of the engine."""
