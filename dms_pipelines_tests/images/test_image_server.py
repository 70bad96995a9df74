"""The local image server and the sample photographs: ranges, validators, HEAD, failure knobs, and the planted defects."""

import hashlib
import http.client
import io
import re
import socket

import pytest
from PIL import Image

from dms_pipelines.devtools.image_server import ImageServer, Served
from dms_pipelines.devtools.sample.images import NAMED_DEFECTS, SampleImages, templates

BODY = bytes(range(256)) * 40  # 10,240 bytes
PICTURE = Served(BODY, "image/jpeg", '"v1"', "Mon, 05 Jan 2026 09:00:00 GMT")


@pytest.fixture
def server():
    paths = {
        "/a.jpg": PICTURE,
        "/moved.jpg": Served(b"", "text/plain", "", "", status=301, redirect_to="/a.jpg"),
        "/gone.jpg": Served(b"gone", "text/plain", "", "", status=410),
    }
    with ImageServer(paths.get) as running:
        yield running


def _get(server: ImageServer, path: str, method: str = "GET", **headers) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_a_plain_get_gets_the_whole_body_with_its_validators(server):
    response, body = _get(server, "/a.jpg")
    assert (response.status, body) == (200, BODY)
    assert response.getheader("Content-Type") == "image/jpeg"
    assert response.getheader("ETag") == '"v1"'
    assert response.getheader("Last-Modified") == PICTURE.last_modified
    assert response.getheader("Content-Length") == str(len(BODY))
    assert response.getheader("Accept-Ranges") == "bytes"


@pytest.mark.parametrize(
    ("wanted", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, len(BODY) - 1), ("bytes=-50", len(BODY) - 50, len(BODY) - 1), ("bytes=0-999999", 0, len(BODY) - 1)],
)
def test_a_range_gets_206_and_only_those_bytes(server, wanted, first, last):
    response, body = _get(server, "/a.jpg", Range=wanted)
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes {first}-{last}/{len(BODY)}"
    assert body == BODY[first : last + 1]


def test_a_range_past_the_end_is_416(server):
    response, _ = _get(server, "/a.jpg", Range=f"bytes={len(BODY)}-")
    assert response.status == 416
    assert response.getheader("Content-Range") == f"bytes */{len(BODY)}"


def test_a_server_ignoring_ranges_sends_the_whole_body(server):
    server.honour_range = False
    response, body = _get(server, "/a.jpg", Range="bytes=0-99")
    assert (response.status, body) == (200, BODY)


def test_validators_answer_304_when_the_image_is_unchanged(server):
    assert _get(server, "/a.jpg", **{"If-None-Match": '"v1"'})[0].status == 304
    assert _get(server, "/a.jpg", **{"If-None-Match": 'W/"v0", "v1"'})[0].status == 304
    assert _get(server, "/a.jpg", **{"If-Modified-Since": PICTURE.last_modified})[0].status == 304
    assert _get(server, "/a.jpg", **{"If-Modified-Since": "Tue, 06 Jan 2026 09:00:00 GMT"})[0].status == 304
    assert server.not_modified == 4
    assert _get(server, "/a.jpg", **{"If-None-Match": '"v0"'})[0].status == 200
    assert _get(server, "/a.jpg", **{"If-Modified-Since": "Sun, 04 Jan 2026 09:00:00 GMT"})[0].status == 200
    # If-None-Match decides when both are sent (RFC 9110): a changed ETag is a change, whatever the date says
    assert _get(server, "/a.jpg", **{"If-None-Match": '"v0"', "If-Modified-Since": PICTURE.last_modified})[0].status == 200
    assert (server.not_modified, server.requests) == (4, 7)


def test_head_sends_the_headers_only(server):
    response, body = _get(server, "/a.jpg", method="HEAD")
    assert (response.status, body) == (200, b"")
    assert response.getheader("Content-Length") == str(len(BODY))


def test_unknown_paths_redirects_and_statuses(server):
    assert _get(server, "/nothing.jpg")[0].status == 404
    moved, _ = _get(server, "/moved.jpg")
    assert (moved.status, moved.getheader("Location")) == (301, "/a.jpg")
    gone, body = _get(server, "/gone.jpg")
    assert (gone.status, body) == (410, b"gone")
    assert _get(server, "/a.jpg", method="POST")[0].status == 405


def test_fail_answers_503_so_many_times_then_serves(server):
    server.fail(2, retry_after="1")
    first, second = _get(server, "/a.jpg")[0], _get(server, "/a.jpg")[0]
    assert (first.status, second.status, first.getheader("Retry-After")) == (503, 503, "1")
    assert _get(server, "/a.jpg")[0].status == 200
    server.fail(1, path="/a.jpg", status=429)
    assert _get(server, "/nothing.jpg")[0].status == 404  # another path is not affected
    assert _get(server, "/a.jpg")[0].status == 429
    assert server.requests == 5


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(b"GET /a.jpg HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\nGET /nothing.jpg HTTP/1.1\r\nHost: x\r\n\r\nGET /a.jpg HTTP/1.1\r\nHost: x\r\nRange: bytes=4-7\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 ") < 3 or not received.endswith(BODY[4:8]):
            received += connection.recv(65536)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"206", b"404", b"206"]
    assert received.index(BODY[0:4]) < received.index(b"no such image") < received.rindex(BODY[4:8])
    assert server.requests == 3


def test_a_stopped_server_refuses_connections_until_started_again():
    server = ImageServer({"/a.jpg": PICTURE}.get).start()
    port = server.port
    assert _get(server, "/a.jpg")[0].status == 200
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    server.start()
    try:
        assert server.port == port
        assert _get(server, "/a.jpg")[0].status == 200
    finally:
        server.stop()


def test_a_delayed_answer_still_comes():
    with ImageServer(lambda path: Served(BODY, "image/jpeg", '"d"', PICTURE.last_modified, delay=0.05)) as server:
        response, body = _get(server, "/slow.jpg", Range="bytes=0-9")
        assert (response.status, body) == (206, BODY[:10])


def test_the_templates_are_real_images_of_the_stated_format_and_size():
    for template in templates():
        if template.format is None:
            with pytest.raises(Exception):
                Image.open(io.BytesIO(template.body))
            continue
        with Image.open(io.BytesIO(template.body)) as image:
            assert (image.format, image.size) == (template.format, (template.width, template.height)), template.name
        assert template.content_type == f"image/{template.format.lower()}"
    formats = {template.format for template in templates()}
    assert {"JPEG", "PNG", "WEBP", "GIF"} <= formats
    assert {template.truth for template in templates()} == {"ok", "small", "broken", "not_an_image"}


def test_the_templates_are_the_same_bytes_every_time():
    again = templates.__wrapped__()
    assert [hashlib.sha256(template.body).hexdigest() for template in again] == [template.digest for template in templates()]


def test_sample_paths_map_to_templates_deterministically_with_named_defects():
    sample, other = SampleImages(), SampleImages()
    for name, truth in NAMED_DEFECTS.items():
        assert sample.truth(f"/leeds/LS000001/{name}") == truth
    assert sample.resolve("/leeds/LS000001/page.html").content_type.startswith("text/html")
    paths = [f"/leeds/LS{index // 20:06d}/{index % 20 + 1:02d}.jpg" for index in range(4000)]
    truths = [sample.truth(path) for path in paths]
    assert truths == [other.truth(path) for path in paths]
    assert truths.count("ok") > 0.9 * len(paths)
    assert {"small", "broken", "not_an_image"} <= set(truths)
    served, again = sample.resolve(paths[0]), other.resolve(paths[0])
    assert (served.etag, served.last_modified, served.body) == (again.etag, again.last_modified, again.body)
    assert len({sample.resolve(path).etag for path in paths[:100]}) == 100  # each path its own ETag
