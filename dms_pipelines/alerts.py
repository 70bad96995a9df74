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
