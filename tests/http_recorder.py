"""A real HTTP server on 127.0.0.1 for tests of what FuggerBot posts: it records every POST
and answers with a chosen status. Never any other address."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: How long a test waits for a request that should come.
WAIT_S = 5.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class HttpRecorder:
    """A real HTTP server on 127.0.0.1 that records every POST and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        requests: queue.Queue[Request] = queue.Queue()
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                requests.put(Request(self.path, dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def next_request(self) -> Request:
        return self.requests.get(timeout=WAIT_S)

    def received_json(self) -> list[dict[str, Any]]:
        """The JSON bodies of every request recorded so far, taken off the queue."""
        out = []
        while True:
            try:
                out.append(self.requests.get_nowait().json())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT_S)
