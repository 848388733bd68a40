"""A minimal reference model server: the kind of serving process the engine watches and remediates.

It serves the MLflow model an alias points at and follows the alias, so rolling the alias back in the registry
rolls the served model back within one reload interval. It imports nothing from ``engine``.
"""
