"""How the settings turn into PagerDuty paging: the routing keys, the planner of each incident's lifecycle events,
and the sender of change events. All of it exists only once ``AIOPS_PAGERDUTY_ROUTING_KEY`` is set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from engine.adapters.actions.pagerduty import RoutingKeys
from engine.adapters.actions.pagerduty_changes import PagerDutyChanges
from engine.app.settings import Settings
from engine.core.paging import IncidentPager
from engine.domain.clock import Clock


def routing_keys(settings: Settings) -> RoutingKeys:
    return RoutingKeys.parse(settings.pagerduty_routing_key, settings.pagerduty_routing_keys)


def pagerduty_pager(settings: Settings) -> IncidentPager | None:
    """Every incident pages PagerDuty once its routing key is set, in AIOPS_MODE like every other action."""
    if not settings.pagerduty_routing_key.get_secret_value():
        return None
    return IncidentPager(mode=settings.mode, public_url=settings.public_url)


def pagerduty_changes(settings: Settings, registry: CollectorRegistry, clock: Clock) -> PagerDutyChanges | None:
    """Change events go where incidents page: the default routing key's service."""
    if not settings.pagerduty_routing_key.get_secret_value():
        return None
    return PagerDutyChanges(
        routing_keys(settings),
        registry,
        clock,
        url=settings.pagerduty_url,
        public_url=settings.public_url,
        timeout_s=settings.action_timeout_s,
        attempts=settings.action_attempts,
    )
