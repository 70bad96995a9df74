"""A session-wide real sshd, and a fresh remote folder for each test."""

import uuid

import pytest

from dms_pipelines.sources.sshd_harness import SshServer, find_sshd


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    binary, reason = find_sshd()
    if binary is None:
        pytest.fail(reason)
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def remote_dir(sshd_server):
    folder = sshd_server.root_dir / uuid.uuid4().hex[:8]
    folder.mkdir()
    return folder
