"""Which statuses of an action record (as the API lists them) are a step still on its way, for tests that wait for
steps to settle."""

from engine.domain.events import ActionStatus

# Pending, running, verifying or being undone (under a lease, after a failed verification).
UNSETTLED = frozenset(
    status.value
    for status in (ActionStatus.PENDING, ActionStatus.RUNNING, ActionStatus.VERIFYING, ActionStatus.UNDOING)
)
