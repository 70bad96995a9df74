"""Alerts: always to the log, and to a webhook when the configuration names the variable holding its URL."""

import json
import logging
import os
import smtplib
import urllib.request
from email.message import EmailMessage

from dms_pipelines.config import Settings

log = logging.getLogger(__name__)


def notify(settings: Settings, kind: str, message: str, logger=None, environ=None, level: str = "error") -> bool:
    """Log the alert (at `level`: a resolved incident is news, not an error); post it to the webhook and e-mail it when
    configured. True when any channel accepted it."""
    getattr(logger or log, level)(f"ALERT {kind}: {message}")
    environ = os.environ if environ is None else environ
    emailed = _email(settings, kind, message, logger or log, environ) if settings.alerts.smtp_host else False
    variable = settings.alerts.webhook_url_env
    url = environ.get(variable) if variable else None
    if not url:
        return emailed
    body = json.dumps({"kind": kind, "group": settings.group_name, "text": message}).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.alerts.timeout_seconds) as response:
            return 200 <= response.status < 300 or emailed
    except OSError as error:
        (logger or log).error(f"alert webhook failed ({type(error).__name__}); the alert is in the log above")
        return emailed


def _email(settings: Settings, kind: str, message: str, logger, environ) -> bool:
    alerts = settings.alerts
    mail = EmailMessage()
    mail["Subject"] = f"[dms-pipelines] {settings.group_name}: {kind}"
    mail["From"] = alerts.email_from or "dms-pipelines@localhost"
    mail["To"] = ", ".join(alerts.email_to)
    mail.set_content(message)
    try:
        with smtplib.SMTP(alerts.smtp_host, alerts.smtp_port, timeout=alerts.timeout_seconds) as smtp:
            if alerts.smtp_starttls:
                smtp.starttls()
            if alerts.smtp_username_env:
                smtp.login(environ.get(alerts.smtp_username_env, ""), environ.get(alerts.smtp_password_env or "", ""))
            smtp.send_message(mail)
        return True
    except (OSError, smtplib.SMTPException) as error:
        logger.error(f"alert e-mail failed ({type(error).__name__}); the alert is in the log above")
        return False
