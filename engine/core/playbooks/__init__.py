"""The playbook language (its validated model) and the planner that turns incidents into action requests."""
