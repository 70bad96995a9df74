"""The SFTP destination: a reader polling the folder during an upload only ever sees a whole old or a whole new file."""

import os
import threading

from dms_pipelines.delivery.sftp_upload import SftpDestination
from dms_pipelines.sources.sftp import SftpSettings


def test_reader_never_sees_half_a_file(sshd_server, remote_dir):
    destination = SftpDestination(
        SftpSettings(host=sshd_server.host, port=sshd_server.port, username=sshd_server.username, known_hosts=sshd_server.known_hosts,
                     remote_dir=str(remote_dir), private_key_path=sshd_server.client_key_path)
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
