"""What the API stand-ins share (kfp_api_recorder, k8s_api_recorder): a recorded request, a handler that records and
replies with JSON, and a server on a free port of 127.0.0.1 for the length of a with-block."""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import email.policy
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # names lowercased
    json: Any = None  # the parsed body of a JSON request
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # multipart uploads: field name -> content


class RecordingHandler(BaseHTTPRequestHandler):
    """Records each request into `requests` (set by the subclass) before the subclass answers it."""

    requests: list[Request]

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Request:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Request(self.command, url.path, query, {k.lower(): v for k, v in self.headers.items()})
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                request.files[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True)
        elif body:
            request.json = json.loads(body)
        self.requests.append(request)
        return request


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serves `handler` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
