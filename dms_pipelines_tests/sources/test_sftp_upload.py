"""The SFTP destination: a reader polling the folder during an upload only ever sees a whole old or a whole new file."""

import os
import threading

from dms_pipelines.delivery.sftp_upload import SftpDestination
from dms_pipelines.sources.sftp import SftpSettings


def test_reader_never_sees_half_a_file(sshd_server, remote_dir):
    destination = SftpDestination(
        SftpSettings(
            host=sshd_server.host, port=sshd_server.port, username=sshd_server.username, known_hosts=sshd_server.known_hosts, remote_dir=str(remote_dir), private_key_path=sshd_server.client_key_path
        )
    )
    old, new = b"A" * 4_000_000, os.urandom(6_000_000)
    destination.put("vehicle_listings.csv", old)
    seen, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                seen.append((remote_dir / "vehicle_listings.csv").read_bytes())
            except FileNotFoundError:
                seen.append(None)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(3):
            destination.put("vehicle_listings.csv", new)
            destination.put("vehicle_listings.csv", old)
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 5
    assert all(content in (old, new) for content in seen)
    assert destination.exists("vehicle_listings.csv") and not destination.exists("other.csv")
    assert not [p for p in remote_dir.iterdir() if p.name.endswith(".part")]


def test_destination_from_config_reads_the_key_from_the_environment(sshd_server, remote_dir, tmp_path):
    from dms_pipelines.config import SftpUploadDestination
    from dms_pipelines.paths import DataPaths

    config = SftpUploadDestination(
        kind="sftp",
        host=sshd_server.host,
        port=sshd_server.port,
        username=sshd_server.username,
        known_hosts=str(sshd_server.known_hosts),
        remote_dir=str(remote_dir),
        private_key_env="DMS_CARSNIP_KEY",
    )
    destination = SftpDestination.from_config(config, DataPaths(tmp_path), environ={"DMS_CARSNIP_KEY": sshd_server.client_key_text})
    destination.put("leeds_vehicles.csv", b"Feed_Id\r\nX\r\n")
    assert (remote_dir / "leeds_vehicles.csv").read_bytes() == b"Feed_Id\r\nX\r\n"
    assert "PRIVATE KEY" not in repr(destination.settings)


def test_a_staged_feed_is_streamed_from_disk_and_arrives_whole(sshd_server, remote_dir, tmp_path):
    from dms_pipelines.delivery.staging import stage

    destination = SftpDestination(
        SftpSettings(
            host=sshd_server.host, port=sshd_server.port, username=sshd_server.username, known_hosts=sshd_server.known_hosts, remote_dir=str(remote_dir), private_key_path=sshd_server.client_key_path
        )
    )
    parts = [os.urandom(1_500_000) for _ in range(4)]
    staged = stage(tmp_path / "staging", "leeds.json", iter(parts))
    destination.put("leeds.json", staged)
    assert (remote_dir / "leeds.json").read_bytes() == b"".join(parts)
    assert staged.path.exists()  # streamed, not moved: the caller discards it
    assert not [p for p in remote_dir.iterdir() if p.name.endswith(".part")]
