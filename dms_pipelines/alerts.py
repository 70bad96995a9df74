"""Alerts: always to the log, and to a webhook when the configuration names the variable holding its URL."""

import json
import logging
import os
import urllib.request

from dms_pipelines.config import Settings

log = logging.getLogger(__name__)


def notify(settings: Settings, kind: str, message: str, logger=None, environ=None) -> bool:
    """Log the alert; post it to the webhook when configured. True when the webhook accepted it."""
    (logger or log).error(f"ALERT {kind}: {message}")
    environ = os.environ if environ is None else environ
    variable = settings.alerts.webhook_url_env if settings.alerts else None
    url = environ.get(variable) if variable else None
    if not url:
        return False
    body = json.dumps({"kind": kind, "group": settings.group_name, "text": message}).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.alerts.timeout_seconds) as response:
            return 200 <= response.status < 300
    except OSError as error:
        (logger or log).error(f"alert webhook failed ({type(error).__name__}); the alert is in the log above")
        return False


def alert_if_failing(settings: Settings, engine, marketplace: str, dealer_id: str, logger=None) -> bool:
    """Alert when the marketplace's last N deliveries for the dealer all failed (N = alerts.marketplace_failure_threshold)."""
    from sqlalchemy import and_, select

    from dms_pipelines.operations.db import deliveries

    threshold = settings.alerts.marketplace_failure_threshold
    with engine.connect() as connection:
        outcomes = connection.execute(
            select(deliveries.c.outcome)
            .where(and_(deliveries.c.marketplace == marketplace, deliveries.c.dealer_id == dealer_id))
            .order_by(deliveries.c.id.desc())
            .limit(threshold)
        ).scalars().all()
    if len(outcomes) == threshold and all(o != "ok" for o in outcomes):
        return notify(settings, "marketplace_failing", f"{marketplace} has failed the last {threshold} deliveries for {dealer_id}", logger) or True
    return False
