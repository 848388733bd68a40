"""The action catalogue and the executor that carries out playbook steps exactly once."""
