"""Bundled replay scenarios: labelled metric series that the embedded engine replays out of the box."""
