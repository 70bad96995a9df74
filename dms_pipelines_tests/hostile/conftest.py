"""The hostile tests reuse the SFTP fixtures: one real sshd for the session."""

import uuid

import pytest

from dms_pipelines.sources.sshd_harness import SshServer, find_sshd


@pytest.fixture(scope="session")
def hostile_sshd(tmp_path_factory):
    binary, reason = find_sshd()
    if binary is None:
        pytest.fail(reason)
    server = SshServer(tmp_path_factory.mktemp("sshd-hostile")).start()
    yield server
    server.stop()


@pytest.fixture
def sshd_server_for_secrets(hostile_sshd):
    folder = hostile_sshd.root_dir / uuid.uuid4().hex[:8]
    folder.mkdir()
    return hostile_sshd, folder
