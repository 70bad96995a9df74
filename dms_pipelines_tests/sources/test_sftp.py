"""The SFTP source against a real OpenSSH server on loopback."""

import hashlib
import os
import time

import paramiko
import pytest

from dms_pipelines.config import SftpSource as SftpConfig
from dms_pipelines.sources.base import SourceError
from dms_pipelines.sources.landing import sha256_of
from dms_pipelines.sources.sftp import FrontTrimmedPipe, SftpSettings, SftpSource
from dms_pipelines_tests.support import put, settings_for


def test_lists_only_complete_matching_files(sshd_server, remote_dir):
    put(remote_dir, "stock_full_1.csv", b"a,b\n1,2\n")
    put(remote_dir, "notes.doc", b"x")
    put(remote_dir, "stock_full_2.csv.part", b"partial")
    put(remote_dir, ".stock_full_3.csv", b"hidden")
    put(remote_dir, "stock_full_4.tmp", b"tmp")
    put(remote_dir, "empty.csv", b"")
    (remote_dir / "folder.csv").mkdir()
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        names = [f.name for f in source.list_files()]
    assert names == ["stock_full_1.csv"]


def test_download_is_byte_identical(sshd_server, remote_dir, tmp_path):
    content = os.urandom(3_000_000)
    put(remote_dir, "inventory_full.xml", content)
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        [remote] = source.list_files()
        source.fetch(remote, tmp_path / "copy")
    assert sha256_of(tmp_path / "copy") == hashlib.sha256(content).hexdigest()


def test_front_trimmed_pipe_reads_what_paramikos_pipe_reads():
    import random

    from paramiko.buffered_pipe import BufferedPipe

    rng = random.Random(7)
    ours, theirs = FrontTrimmedPipe(), BufferedPipe()
    for _ in range(2000):
        if rng.random() < 0.4:
            chunk = rng.randbytes(rng.randint(1, 40_000))
            ours.feed(chunk)
            theirs.feed(chunk)
        elif len(theirs):
            size = rng.choice([4, 9, 13, 32_768, rng.randint(1, 70_000)])
            assert ours.read(size, timeout=0) == theirs.read(size, timeout=0)
        assert len(ours) == len(theirs)
    assert ours.empty() == theirs.empty()
    ours.close()
    assert ours.read(10) == b""


def test_downloads_use_the_front_trimmed_pipe(sshd_server, remote_dir, tmp_path):
    put(remote_dir, "stock_full_1.csv", os.urandom(3_000_000))
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        [remote] = source.list_files()
        source.fetch(remote, tmp_path / "copy.csv")
        assert isinstance(source._sftp.get_channel().in_buffer, FrontTrimmedPipe)
    assert sha256_of(tmp_path / "copy.csv") == sha256_of(remote_dir / "stock_full_1.csv")


def test_older_mtime_and_shared_mtime_are_both_listed(sshd_server, remote_dir):
    now = time.time()
    put(remote_dir, "b_new.csv", b"1", mtime=now)
    put(remote_dir, "a_late_but_old.csv", b"2", mtime=now - 86_400)
    put(remote_dir, "c_same.csv", b"3", mtime=now)
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        assert [f.name for f in source.list_files()] == ["a_late_but_old.csv", "b_new.csv", "c_same.csv"]


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd_server, remote_dir, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(SourceError) as caught:
        SftpSource(settings_for(sshd_server, remote_dir, known_hosts=empty)).list_files()
    assert caught.value.transient is False
    assert sshd_server.host_fingerprint in str(caught.value) and "not in known_hosts" in str(caught.value)


def test_changed_host_key_is_refused(sshd_server, remote_dir, tmp_path):
    other = paramiko.Ed25519Key.from_private_key_file(str(sshd_server.other_key_path))
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{sshd_server.host}]:{sshd_server.port} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(SourceError) as caught:
        SftpSource(settings_for(sshd_server, remote_dir, known_hosts=wrong)).list_files()
    assert "CHANGED" in str(caught.value) and sshd_server.host_fingerprint in str(caught.value)


def test_wrong_client_key_is_a_permanent_error(sshd_server, remote_dir):
    with pytest.raises(SourceError) as caught:
        SftpSource(settings_for(sshd_server, remote_dir, private_key_path=sshd_server.other_key_path)).list_files()
    assert caught.value.transient is False and "authentication" in str(caught.value)


def test_key_from_environment_and_secrets_never_shown(sshd_server, remote_dir):
    config = SftpConfig(
        kind="sftp", host=sshd_server.host, port=sshd_server.port, username=sshd_server.username, known_hosts=str(sshd_server.known_hosts), remote_dir=str(remote_dir), private_key_env="DMS_TEST_KEY"
    )
    with pytest.raises(SourceError, match="environment variable DMS_TEST_KEY is not set"):
        SftpSettings.from_config(config, environ={})
    settings = SftpSettings.from_config(config, environ={"DMS_TEST_KEY": sshd_server.client_key_text})
    assert "PRIVATE KEY" not in repr(settings) and "PRIVATE KEY" not in repr(SftpSource(settings))
    put(remote_dir, "x.csv", b"1")
    with SftpSource(settings) as source:
        assert [f.name for f in source.list_files()] == ["x.csv"]


def test_unreachable_server_is_transient(sshd_server, remote_dir):
    from dms_pipelines.devtools.sshd_harness import free_port

    with pytest.raises(SourceError) as caught:
        SftpSource(settings_for(sshd_server, remote_dir, port=free_port(), connect_timeout=2)).list_files()
    assert caught.value.transient is True


def test_size_mismatch_is_detected(sshd_server, remote_dir, tmp_path):
    path = put(remote_dir, "growing.csv", b"12345")
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        [remote] = source.list_files()
        path.write_bytes(b"1234567890")  # the DMS is still writing
        with pytest.raises(SourceError, match="size mismatch .* got 10 of 5 bytes") as caught:
            source.fetch(remote, tmp_path / "copy")
    assert caught.value.transient is True


def test_watchdog_stops_a_stalled_transfer(sshd_server, remote_dir, tmp_path, monkeypatch):
    put(remote_dir, "big.csv", os.urandom(200_000))

    def stalled_getfo(self, remotepath, fl, **kwargs):
        time.sleep(5)  # a server that stops sending mid-transfer, without closing the channel
        raise EOFError("channel closed")

    monkeypatch.setattr(paramiko.SFTPClient, "getfo", stalled_getfo)
    with SftpSource(settings_for(sshd_server, remote_dir, transfer_timeout=1)) as source:
        [remote] = source.list_files()
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out after 1 s") as caught:
            source.fetch(remote, tmp_path / "copy")
    assert caught.value.transient is True and time.monotonic() - started < 8


@pytest.mark.parametrize("action", ["move", "delete", "keep"])
def test_after_fetch_actions(sshd_server, remote_dir, tmp_path, action):
    (remote_dir / "done").mkdir()
    put(remote_dir, "stock.csv", b"1,2")
    with SftpSource(settings_for(sshd_server, remote_dir, after_fetch=action, move_to=str(remote_dir / "done"))) as source:
        [remote] = source.list_files()
        source.fetch(remote, tmp_path / "copy")
        source.finish(remote)
    assert (remote_dir / "stock.csv").exists() == (action == "keep")
    assert (remote_dir / "done" / "stock.csv").exists() == (action == "move")
