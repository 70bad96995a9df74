"""A real SMTP server on loopback (aiosmtpd) for the CRM e-mail tests: records what it accepts, or refuses as told."""

import socket
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ACCEPT = "accept"
REFUSE_RECIPIENTS = "refuse_recipients"  # 550 at RCPT
DEFER = "defer"  # 451 at the end of DATA
REJECT = "reject"  # 554 at the end of DATA
MODES = (ACCEPT, REFUSE_RECIPIENTS, DEFER, REJECT)
QUEUED_REPLY = "250 2.0.0 Ok: queued as"


def free_port() -> int:
    """A loopback port nothing listens on (bound then released): a server that is not there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    content: bytes  # the message as the server got it after DATA (CRLF line ends)
    mail_options: list[str]

    def message(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=DEFAULT_POLICY)


@dataclass
class RecordingHandler:
    mode: str = ACCEPT
    received: list[Received] = field(default_factory=list)
    refuse_all: bool = True  # in REFUSE_RECIPIENTS: every recipient, or only those whose address starts with "refused"
    rcpt_refusals: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == REFUSE_RECIPIENTS and (self.refuse_all or address.startswith("refused")):
            self.rcpt_refusals += 1
            return "550 5.1.1 Recipient address rejected: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode == DEFER:
            return "451 4.3.0 Mail server temporarily rejected message; try again later"
        if self.mode == REJECT:
            return "554 5.6.0 Message rejected: not acceptable"
        number = len(self.received) + 1
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content), list(envelope.mail_options)))
        return f"{QUEUED_REPLY} Q{number:04d}"


class SmtpServer:
    """Listens on a free loopback port until stopped; with `credentials` (user, password) it offers AUTH LOGIN/PLAIN without TLS."""

    def __init__(self, mode: str = ACCEPT, credentials: tuple[str, str] | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.handler = RecordingHandler(mode=mode)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.credentials = credentials
        extra = {}
        if credentials is not None:
            extra = dict(authenticator=self._authenticate, auth_require_tls=False, auth_required=True)
        self.controller = Controller(self.handler, hostname=self.host, port=self.port, server_hostname="crm.test", **extra)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        return AuthResult(success=ok, handled=False)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def set_mode(self, mode: str, refuse_all: bool = True) -> None:
        self.handler.mode, self.handler.refuse_all = mode, refuse_all

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
