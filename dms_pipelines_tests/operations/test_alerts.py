"""Alerts reach a real local webhook and a real local SMTP server; without them they are still logged."""

import socket
import threading

import yaml

from dms_pipelines.config import parse_settings
from dms_pipelines.operations.alerts import notify
from dms_pipelines_tests.support import COMMITTED_CONFIG, AlertHook


def settings_with(alerts: dict):
    raw = yaml.safe_load(COMMITTED_CONFIG.read_text())
    raw["alerts"] = alerts
    return parse_settings(raw)


def test_webhook_receives_the_alert():
    hook = AlertHook()
    settings = settings_with({"webhook_url_env": "DMS_ALERT_HOOK"})
    try:
        assert notify(settings, "run_failed", "run 1234 failed", environ={"DMS_ALERT_HOOK": hook.url})
        assert hook.received == [{"kind": "run_failed", "group": "Aire Valley Motors", "text": "run 1234 failed"}]
    finally:
        hook.close()


def test_smtp_receives_the_alert():
    lines = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def tiny_smtp():
        connection, _ = listener.accept()
        stream = connection.makefile("rwb")
        stream.write(b"220 localhost ESMTP\r\n")
        stream.flush()
        in_data = False
        for raw in stream:
            line = raw.decode().rstrip("\r\n")
            lines.append(line)
            if in_data:
                if line == ".":
                    in_data = False
                    stream.write(b"250 queued\r\n")
            elif line.upper().startswith(("EHLO", "HELO")):
                stream.write(b"250 localhost\r\n")
            elif line.upper() == "DATA":
                in_data = True
                stream.write(b"354 go ahead\r\n")
            elif line.upper() == "QUIT":
                stream.write(b"221 bye\r\n")
                stream.flush()
                break
            else:
                stream.write(b"250 ok\r\n")
            stream.flush()
        connection.close()

    threading.Thread(target=tiny_smtp, daemon=True).start()
    settings = settings_with({"smtp_host": "127.0.0.1", "smtp_port": listener.getsockname()[1], "smtp_starttls": False, "email_to": ["ops@airevalley.example"]})
    assert notify(settings, "marketplace_failing", "autotrader has failed 3 times", environ={})
    assert any("autotrader has failed 3 times" in line for line in lines) and any(line.upper().startswith("RCPT TO:<OPS@AIREVALLEY.EXAMPLE>") for line in lines)


def test_without_channels_the_alert_is_only_logged(caplog):
    assert notify(settings_with({}), "run_failed", "only in the log", environ={}) is False
    assert "ALERT run_failed: only in the log" in caplog.text
