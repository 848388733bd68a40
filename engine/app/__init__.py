"""The composition root and the command line: settings, wiring, and the `aiops` commands."""
