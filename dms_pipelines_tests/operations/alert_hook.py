"""A real local webhook that records every alert posted to it, for the tests of alerts and incidents."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class AlertHook:
    """Listens on a free loopback port until closed; `received` holds each alert's JSON body, in order."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def kinds(self) -> list[str]:
        return [alert["kind"] for alert in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
