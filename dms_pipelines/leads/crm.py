"""Deliver one ADF document to a dealer's CRM: into its file drop (local folder or SFTP) and/or its lead mailbox by SMTP."""

import os
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate

import paramiko

from dms_pipelines.config import Crm, CrmEmail, Dealer, LocalDestination
from dms_pipelines.delivery.sftp_upload import SftpDestination
from dms_pipelines.kernels.atomic import write_bytes_atomically
from dms_pipelines.paths import DataPaths
from dms_pipelines.sources.base import SourceError, is_in_progress_name

DESTINATIONS = ("drop", "email")
MAX_LINE_BYTES = 998  # RFC 5322: longer lines may not travel 8bit
MAX_REPLY_SHOWN = 200


@dataclass(frozen=True)
class CrmReceipt:
    """One destination that took the document: what was written or sent, and what the CRM side confirmed."""

    destination: str  # "drop" | "email"
    reference: str  # the file name written, or the Message-ID sent
    acknowledged: str  # "renamed into place", or the server's reply to DATA ("250 2.0.0 Ok: queued as ...")


class CrmDeliveryError(Exception):
    """One destination did not take the document; `transient` says whether trying again later may help.
    The message names the destination and the cause, never the lead's personal data or a secret."""

    def __init__(self, destination: str, message: str, *, transient: bool):
        super().__init__(f"CRM {destination}: {message}")
        self.destination = destination
        self.transient = transient


@dataclass(frozen=True)
class CrmOutcome:
    """What one delivery did: every destination tried ends up in exactly one of `receipts` or `failures`, so the caller
    records the receipts (never send those again) and retries only `pending` (pass it as `only` next time)."""

    receipts: list[CrmReceipt] = field(default_factory=list)
    failures: list[CrmDeliveryError] = field(default_factory=list)

    @property
    def delivered(self) -> set[str]:
        return {receipt.destination for receipt in self.receipts}

    @property
    def pending(self) -> set[str]:
        return {failure.destination for failure in self.failures}

    @property
    def complete(self) -> bool:
        return not self.failures

    @property
    def retryable(self) -> bool:
        """Whether every failure is transient (a permanent one needs the configuration or the CRM fixed first)."""
        return all(failure.transient for failure in self.failures)


def configured_destinations(crm: Crm) -> set[str]:
    return {name for name, config in (("drop", crm.drop), ("email", crm.email)) if config is not None}


def deliver_adf(crm: Crm, dealer: Dealer, paths: DataPaths, name: str, document: bytes, environ: dict | None = None, only: set[str] | None = None) -> CrmOutcome:
    """Send `document` as the file `name` to each destination in `only` (default: every one `crm` configures), in the order
    drop then e-mail; a failure at one does not stop the other. Never raises for a delivery problem: see CrmOutcome."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or is_in_progress_name(name):
        raise ValueError(f"{name!r} is not a plain, visible file name for a CRM drop")
    wanted = set(DESTINATIONS) if only is None else set(only)
    unknown = wanted - set(DESTINATIONS)
    if unknown:
        raise ValueError(f"unknown CRM destinations {sorted(unknown)}; known: {', '.join(DESTINATIONS)}")
    environ = os.environ if environ is None else environ
    receipts, failures = [], []
    for destination in DESTINATIONS:
        if destination not in wanted:
            continue
        if destination not in configured_destinations(crm):
            if only is not None:
                failures.append(CrmDeliveryError(destination, f"dealer {dealer.id} has no CRM {destination} configured any more", transient=False))
            continue
        try:
            receipt = _drop(crm, paths, name, document, environ) if destination == "drop" else _email(crm.email, name, document, environ)
        except CrmDeliveryError as error:
            failures.append(error)
        else:
            receipts.append(receipt)
    return CrmOutcome(receipts, failures)


# ----------------------------------------------------------------------------------------------------------------- drop


def _drop(crm: Crm, paths: DataPaths, name: str, document: bytes, environ) -> CrmReceipt:
    if isinstance(crm.drop, LocalDestination):
        folder = paths.resolve(crm.drop.path)
        try:
            write_bytes_atomically(folder / name, document)
        except (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError) as error:
            raise CrmDeliveryError("drop", f"cannot write {name} into {folder}: {error.strerror}", transient=False) from None
        except OSError as error:
            raise CrmDeliveryError("drop", f"cannot write {name} into {folder}: {error.strerror or type(error).__name__}", transient=True) from None
        return CrmReceipt("drop", name, "renamed into place")
    try:
        destination = SftpDestination.from_config(crm.drop, paths, environ)
        destination.put(name, document)
    except SourceError as error:
        raise CrmDeliveryError("drop", str(error), transient=error.transient) from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise CrmDeliveryError("drop", f"SFTP upload of {name} failed: {type(error).__name__}: {error}", transient=True) from None
    return CrmReceipt("drop", name, "renamed into place")


# ---------------------------------------------------------------------------------------------------------------- email


def _secret(settings: CrmEmail, variable: str | None, environ) -> str | None:
    if variable is None:
        return None
    value = environ.get(variable)
    if not value:
        raise CrmDeliveryError("email", f"environment variable {variable} is not set (it should hold the SMTP credential for {settings.smtp_host})", transient=False)
    return value


def _reply(code: int, text: bytes | str) -> str:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    shown = " ".join(shown.split())[:MAX_REPLY_SHOWN]
    return f"{code} {shown}".strip()


def _refused(step: str, code: int, text: bytes | str) -> CrmDeliveryError:
    return CrmDeliveryError("email", f"the SMTP server refused {step}: {_reply(code, text)}", transient=400 <= code < 500)


def adf_message(settings: CrmEmail, name: str, document: bytes) -> EmailMessage:
    """The e-mail carrying the document: as the whole text/plain body ("text"), or as an application/xml attachment.
    The subject names the file only (no personal data)."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["Subject"] = f"ADF lead {name}"
    message["Date"] = formatdate(usegmt=True)
    # The same lead revision always gets the same Message-ID (from its file name): a resend after a crash is one a CRM can drop.
    message["Message-ID"] = f"<{name.removesuffix('.xml')}@{settings.email_from.rpartition('@')[2] or 'dms-pipelines.invalid'}>"
    if settings.body == "text":
        text = document.decode("utf-8")
        # 8bit keeps the XML readable to CRMs that read the raw body; base64 only where a line is too long to travel 8bit.
        long_lines = any(len(line) > MAX_LINE_BYTES for line in document.splitlines())
        message.set_content(text, subtype="plain", charset="utf-8", cte="base64" if long_lines else "8bit")
    else:
        message.set_content(f"An ADF 1.0 lead is attached as {name}.\n", subtype="plain", charset="utf-8")
        message.add_attachment(document, maintype="application", subtype="xml", filename=name)
    return message


def _email(settings: CrmEmail, name: str, document: bytes, environ) -> CrmReceipt:
    username, password = _secret(settings, settings.username_env, environ), _secret(settings, settings.password_env, environ)
    message = adf_message(settings, name, document)
    endpoint = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds) as smtp:
            smtp.ehlo()
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if username is not None:
                smtp.login(username, password or "")
            options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []
            code, text = smtp.mail(settings.email_from, options)
            if code != 250:
                raise _refused("the sender", code, text)
            refusals = [smtp.rcpt(recipient) for recipient in settings.email_to]
            refusals = [(code, text) for code, text in refusals if code not in (250, 251)]
            if refusals:
                smtp.rset()  # a partly addressed lead is not sent: the retry must reach every recipient once
                transient = all(400 <= code < 500 for code, _ in refusals)
                shown = "; ".join(_reply(code, text) for code, text in refusals)
                raise CrmDeliveryError("email", f"the SMTP server at {endpoint} refused {len(refusals)} of {len(settings.email_to)} recipients: {shown}", transient=transient)
            code, text = smtp.data(message.as_bytes())
            if code != 250:
                raise _refused("the message", code, text)
    except CrmDeliveryError:
        raise
    except smtplib.SMTPAuthenticationError as error:
        raise CrmDeliveryError("email", f"login to {endpoint} was refused: {_reply(error.smtp_code, error.smtp_error)}", transient=False) from None
    except smtplib.SMTPNotSupportedError as error:
        raise CrmDeliveryError("email", f"the SMTP server at {endpoint} does not support what the configuration asks: {error}", transient=False) from None
    except smtplib.SMTPResponseException as error:
        raise _refused(f"the delivery at {endpoint}", error.smtp_code, error.smtp_error) from None
    except ssl.SSLCertVerificationError as error:
        raise CrmDeliveryError("email", f"the TLS certificate of {endpoint} is not trusted: {error.verify_message}", transient=False) from None
    except (smtplib.SMTPException, OSError, socket.timeout) as error:
        raise CrmDeliveryError("email", f"cannot reach the SMTP server at {endpoint}: {type(error).__name__}: {error}", transient=True) from None
    return CrmReceipt("email", message["Message-ID"], _reply(code, text))
