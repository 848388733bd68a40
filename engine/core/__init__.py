"""The engine's logic: detection, incidents, playbooks and actions. Imports no server, database or CLI library."""
