"""CRM delivery against real servers: a local drop, the test sshd, and an aiosmtpd mailbox that accepts, refuses or defers."""

import pandas as pd
import pytest

from dms_pipelines.config import Crm, CrmEmail, LocalDestination, SftpUploadDestination
from dms_pipelines.kernels.atomic import fsync_counts
from dms_pipelines.leads.adf import adf_file_name, render_adf
from dms_pipelines.leads.crm import CrmDeliveryError, CrmOutcome, CrmReceipt, deliver_adf
from dms_pipelines.leads.records import FIELD_NAMES
from dms_pipelines.paths import DataPaths
from dms_pipelines_tests.leads.smtp_server import DEFER, QUEUED_REPLY, REFUSE_RECIPIENTS, REJECT, SmtpServer, free_port
from dms_pipelines_tests.support import fixed_dealer

PERSONAL = ("Zoë", "Quinn", "zoe.quinn@example.com", "+447700900123", "LS1 1AA")
SMTP_USER, SMTP_PASSWORD = "crm-user", "pw-Not-To-Be-Shown-7731"


def lead() -> dict:
    values = {name: None for name in FIELD_NAMES}
    values.update(
        source="website",
        source_lead_id="ENQ-77",
        dealer_id="leeds",
        received_at=pd.Timestamp("2026-11-02T10:00:00Z"),
        lead_status="new",
        first_name="Zoë",
        last_name="Quinn",
        email="zoe.quinn@example.com",
        phone="+447700900123",
        postcode="LS1 1AA",
        message="Can I see it on Saturday? <3 & thanks",
    )
    return values


DOCUMENT = render_adf(lead(), fixed_dealer(), None, "unlinked", [], "Dealer website")
NAME = adf_file_name(lead(), 1)


def dealer_with(**crm):
    crm = Crm(**crm)
    return crm, fixed_dealer().model_copy(update={"crm": crm})


def mailbox(server: SmtpServer, **changes) -> CrmEmail:
    return CrmEmail(**{"smtp_host": server.host, "smtp_port": server.port, "email_from": "leads@dms.example", "email_to": ["crm@dealer.example"], "timeout_seconds": 5, **changes})


def sftp_drop(server, remote_dir, **changes) -> SftpUploadDestination:
    values = dict(
        kind="sftp",
        host=server.host,
        port=server.port,
        username=server.username,
        known_hosts=str(server.known_hosts),
        remote_dir=str(remote_dir),
        private_key_path=str(server.client_key_path),
        connect_timeout=5,
        channel_timeout=5,
    )
    values.update(changes)
    return SftpUploadDestination(**values)


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def paths(tmp_path) -> DataPaths:
    return DataPaths(tmp_path / "data")


def assert_no_personal_data(text: str) -> None:
    assert not [item for item in PERSONAL if item in text]


# ----------------------------------------------------------------------------------------------------------------- drop


def test_a_local_drop_writes_the_exact_bytes_atomically(paths):
    crm, dealer = dealer_with(drop=LocalDestination(kind="local", path="crm_drop"))
    before = fsync_counts()
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT)
    after = fsync_counts()
    assert outcome == CrmOutcome([CrmReceipt("drop", NAME, "renamed into place")], [])
    assert outcome.complete and outcome.delivered == {"drop"}
    folder = paths.root / "crm_drop"
    assert [p.name for p in folder.iterdir()] == [NAME]  # no temporary left beside it
    assert (folder / NAME).read_bytes() == DOCUMENT
    assert after["file"] > before["file"] and after["directory"] > before["directory"]


def test_a_local_drop_whose_folder_is_a_file_fails_permanently(paths):
    paths.root.mkdir(parents=True)
    (paths.root / "crm_drop").write_text("not a folder")
    crm, dealer = dealer_with(drop=LocalDestination(kind="local", path="crm_drop"))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT)
    (failure,) = outcome.failures
    assert failure.destination == "drop" and not failure.transient and not outcome.receipts


@pytest.mark.parametrize("name", ["../escape.xml", ".hidden.xml", "a.xml.part", ""])
def test_a_name_that_is_not_a_plain_visible_file_is_refused(paths, name):
    crm, dealer = dealer_with(drop=LocalDestination(kind="local", path="crm_drop"))
    with pytest.raises(ValueError):
        deliver_adf(crm, dealer, paths, name, DOCUMENT)


def test_an_sftp_drop_arrives_whole_under_its_final_name(sshd_server, remote_dir, paths):
    crm, dealer = dealer_with(drop=sftp_drop(sshd_server, remote_dir))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={})
    assert outcome.receipts == [CrmReceipt("drop", NAME, "renamed into place")] and outcome.complete
    assert (remote_dir / NAME).read_bytes() == DOCUMENT
    assert [p.name for p in remote_dir.iterdir()] == [NAME]  # no .part left


def test_an_sftp_drop_with_a_refused_key_fails_permanently(sshd_server, remote_dir, paths):
    crm, dealer = dealer_with(drop=sftp_drop(sshd_server, remote_dir, private_key_path=str(sshd_server.other_key_path)))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert (failure.destination, failure.transient) == ("drop", False) and "authentication" in str(failure)
    assert not list(remote_dir.iterdir())


def test_an_sftp_drop_nobody_listens_on_fails_transiently(sshd_server, tmp_path, paths):
    crm, dealer = dealer_with(drop=sftp_drop(sshd_server, tmp_path, port=free_port()))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert (failure.destination, failure.transient) == ("drop", True)


def test_an_sftp_key_variable_that_is_not_set_fails_permanently_naming_it(sshd_server, remote_dir, paths):
    crm, dealer = dealer_with(drop=sftp_drop(sshd_server, remote_dir, private_key_path=None, private_key_env="DMS_CRM_SFTP_KEY"))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert not failure.transient and "DMS_CRM_SFTP_KEY" in str(failure)


# ---------------------------------------------------------------------------------------------------------------- email


def test_text_mode_sends_the_adf_as_the_whole_plain_body(smtp, paths):
    crm, dealer = dealer_with(email=mailbox(smtp))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={})
    (receipt,) = outcome.receipts
    (received,) = smtp.received
    message = received.message()
    assert receipt.destination == "email" and receipt.reference == message["Message-ID"] and receipt.reference.startswith("<")
    assert receipt.acknowledged == f"{QUEUED_REPLY} Q0001"
    assert received.mail_from == "leads@dms.example" and received.recipients == ["crm@dealer.example"]
    assert not message.is_multipart() and message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == DOCUMENT.decode("utf-8")  # SMTP carries CRLF; nothing else in the body
    assert message["Content-Transfer-Encoding"] == "8bit" and "BODY=8BITMIME" in received.mail_options  # the raw body is the readable XML
    assert DOCUMENT.replace(b"\n", b"\r\n") in received.content
    assert_no_personal_data(message["Subject"])


def test_text_mode_with_a_line_too_long_for_8bit_still_decodes_to_the_document(smtp, paths):
    long_document = render_adf(dict(lead(), message="x" * 3000), fixed_dealer(), None, "unlinked", [], "Dealer website")
    crm, dealer = dealer_with(email=mailbox(smtp))
    assert deliver_adf(crm, dealer, paths, NAME, long_document, environ={}).complete
    message = smtp.received[0].message()
    assert message["Content-Transfer-Encoding"] == "base64" and message.get_content().replace("\r\n", "\n") == long_document.decode()


def test_attachment_mode_attaches_the_adf_as_application_xml(smtp, paths):
    crm, dealer = dealer_with(email=mailbox(smtp, body="attachment"))
    (receipt,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).receipts
    message = smtp.received[0].message()
    assert message.is_multipart() and receipt.reference == message["Message-ID"]
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/xml" and attachment.get_filename() == NAME
    assert attachment.get_content() == DOCUMENT
    assert NAME in message.get_body(("plain",)).get_content()
    assert_no_personal_data(message["Subject"] + message.get_body(("plain",)).get_content())


def test_a_refused_recipient_is_a_permanent_failure(smtp, paths):
    smtp.set_mode(REFUSE_RECIPIENTS)
    crm, dealer = dealer_with(email=mailbox(smtp))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={})
    (failure,) = outcome.failures
    assert (failure.destination, failure.transient) == ("email", False) and "550" in str(failure)
    assert not outcome.receipts and not smtp.received and not outcome.retryable
    assert_no_personal_data(str(failure))


def test_one_refused_recipient_of_two_sends_nothing_and_fails(smtp, paths):
    smtp.set_mode(REFUSE_RECIPIENTS, refuse_all=False)
    crm, dealer = dealer_with(email=mailbox(smtp, email_to=["crm@dealer.example", "refused@dealer.example"]))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert not failure.transient and "1 of 2 recipients" in str(failure)
    assert not smtp.received  # not half-delivered: a retry reaches each recipient once


def test_a_451_is_a_transient_failure(smtp, paths):
    smtp.set_mode(DEFER)
    crm, dealer = dealer_with(email=mailbox(smtp))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={})
    (failure,) = outcome.failures
    assert (failure.destination, failure.transient) == ("email", True) and "451" in str(failure) and outcome.retryable
    assert not outcome.receipts


def test_a_message_rejected_with_554_is_a_permanent_failure(smtp, paths):
    smtp.set_mode(REJECT)
    crm, dealer = dealer_with(email=mailbox(smtp))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert (failure.destination, failure.transient) == ("email", False) and "554" in str(failure)


def test_a_mail_server_that_is_not_listening_is_a_transient_failure(paths):
    crm, dealer = dealer_with(email=CrmEmail(smtp_host="127.0.0.1", smtp_port=free_port(), email_from="a@b.example", email_to=["c@d.example"], timeout_seconds=2))
    (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}).failures
    assert (failure.destination, failure.transient) == ("email", True)


def test_a_retry_sends_only_what_is_still_pending(smtp, paths):
    crm, dealer = dealer_with(drop=LocalDestination(kind="local", path="crm_drop"), email=mailbox(smtp))
    smtp.set_mode(DEFER)
    first = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={})
    assert first.delivered == {"drop"} and first.pending == {"email"}
    dropped = paths.root / "crm_drop" / NAME
    dropped.unlink()  # so a second drop would show
    smtp.set_mode("accept")
    second = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}, only=first.pending)
    assert second.complete and second.delivered == {"email"} and len(smtp.received) == 1
    assert not dropped.exists()


def test_only_a_destination_that_is_not_configured_is_a_permanent_failure(smtp, paths):
    crm, dealer = dealer_with(email=mailbox(smtp))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}, only={"drop", "email"})
    assert outcome.delivered == {"email"} and [(f.destination, f.transient) for f in outcome.failures] == [("drop", False)]
    with pytest.raises(ValueError):
        deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={}, only={"fax"})


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback test server only
def test_login_uses_the_credentials_from_the_named_variables(paths):
    with SmtpServer(credentials=(SMTP_USER, SMTP_PASSWORD)) as server:
        crm, dealer = dealer_with(email=mailbox(server, username_env="DMS_CRM_SMTP_USER", password_env="DMS_CRM_SMTP_PASSWORD"))
        good = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={"DMS_CRM_SMTP_USER": SMTP_USER, "DMS_CRM_SMTP_PASSWORD": SMTP_PASSWORD})
        assert good.complete and len(server.received) == 1
        (failure,) = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={"DMS_CRM_SMTP_USER": SMTP_USER, "DMS_CRM_SMTP_PASSWORD": "wrong-password-9"}).failures
        assert not failure.transient and "535" in str(failure) and "wrong-password-9" not in str(failure)
        assert len(server.received) == 1


def test_a_missing_password_variable_is_permanent_and_named_without_any_secret(smtp, paths):
    crm, dealer = dealer_with(email=mailbox(smtp, username_env="DMS_CRM_SMTP_USER", password_env="DMS_CRM_SMTP_PASSWORD"))
    outcome = deliver_adf(crm, dealer, paths, NAME, DOCUMENT, environ={"DMS_CRM_SMTP_USER": "user-Secretish-4410"})
    (failure,) = outcome.failures
    assert isinstance(failure, CrmDeliveryError) and not failure.transient
    assert "DMS_CRM_SMTP_PASSWORD" in str(failure) and "user-Secretish-4410" not in str(failure)
    assert not smtp.received


def test_a_lead_revision_always_gets_the_same_message_id_and_another_revision_another():
    from dms_pipelines.leads.crm import adf_message

    settings = CrmEmail(smtp_host="127.0.0.1", smtp_port=25, email_from="leads@dms.example", email_to=["crm@dealer.example"])
    first = adf_message(settings, "leeds-website-W-1-abc-r1.xml", b"<adf/>")["Message-ID"]
    assert first == adf_message(settings, "leeds-website-W-1-abc-r1.xml", b"<adf/>")["Message-ID"] == "<leeds-website-W-1-abc-r1@dms.example>"
    assert adf_message(settings, "leeds-website-W-1-abc-r2.xml", b"<adf/>")["Message-ID"] != first
