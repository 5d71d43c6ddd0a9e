"""A local fake of WeCom's API (企业微信), for tests, end-to-end checks and the demo.

A real HTTP server on 127.0.0.1 (``http.server`` in a thread; port 0 picks a free port)::

    from nestpoint_wecom.fake import FakeWeCom

    with FakeWeCom(corp_id="ww-test", corp_secret="s3cret", agent_id=1000002) as wecom:
        ...  # config {"base_url": wecom.url, "corp_id": "ww-test", "agent_id": 1000002}
        wecom.sent           # the messages it accepted (the JSON bodies, with their msgid)
        wecom.token_fetches  # how many times a token was asked for

``plugin_config(**extra)`` and ``plugin_secrets()`` are what to enable the plugin with and
set for it (through the API) so that it sends here.

``GET /cgi-bin/gettoken?corpid=&corpsecret=`` answers a token valid ``token_lifetime``
seconds (the same token again while it is valid, as WeCom does); ``POST
/cgi-bin/message/send?access_token=`` checks the token (40014 unknown, 42001 expired), the
agent id (40056), the user (81013 when ``users`` is given and lacks it) and the body.
Switches inject failures:

- ``expire_tokens()``: every token issued so far is expired (42001) from now on;
- ``revoke_tokens()``: every token issued so far is unknown (40014) from now on;
- ``fail_next(errcode=-1, times=1, status=200)``: the next sends answer this errcode (or
  HTTP ``status``);
- ``fail_token_next(errcode=-1, times=1)``: the same for the next token requests;
- ``delay_seconds`` / ``token_delay_seconds``: wait before answering a send / a token.

``python -m nestpoint_wecom.fake --port 8702`` serves one until Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its timeout) while the fake was waiting


@dataclass
class _Failure:
    errcode: int
    status: int


@dataclass
class FakeWeCom:
    """The fake WeCom API; ``start()`` returns its URL, ``stop()`` ends it."""

    corp_id: str = "ww-fake"
    corp_secret: str = "fake-secret"  # noqa: S105 - a test double's own secret
    agent_id: int = 1000002
    users: set[str] | None = None  # None: every userid exists
    token_lifetime: int = 7200
    port: int = 0
    delay_seconds: float = 0.0
    token_delay_seconds: float = 0.0
    sent: list[dict[str, Any]] = field(default_factory=list)
    token_fetches: int = 0
    refused: list[int] = field(default_factory=list)  # errcodes of refused sends

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expires at (monotonic)
        self._current: str | None = None
        self._failures: deque[_Failure] = deque()
        self._token_failures: deque[_Failure] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake._handle(method, self.path, body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeWeCom:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def plugin_config(self, **extra: Any) -> dict[str, Any]:
        """The wecom plugin's configuration for this fake."""
        return {"base_url": self.url, "corp_id": self.corp_id, "agent_id": self.agent_id} | extra

    def plugin_secrets(self) -> dict[str, str]:
        """The plugin secrets to set for this fake (``PUT …/secrets/<name>``)."""
        return {"corp_secret": self.corp_secret}

    # ------------------------------------------------------------------ switches

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (42001)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)
            self._current = None

    def revoke_tokens(self) -> None:
        """Every token issued so far is unknown from now on (40014)."""
        with self._lock:
            self._tokens.clear()
            self._current = None

    def fail_next(self, errcode: int = -1, times: int = 1, status: int = 200) -> None:
        """The next ``times`` sends answer ``errcode`` (or the HTTP ``status``)."""
        with self._lock:
            self._failures.extend(_Failure(errcode, status) for _ in range(times))

    def fail_token_next(self, errcode: int = -1, times: int = 1, status: int = 200) -> None:
        """The next ``times`` token requests answer ``errcode`` (or the HTTP ``status``)."""
        with self._lock:
            self._token_failures.extend(_Failure(errcode, status) for _ in range(times))

    # ------------------------------------------------------------------ the API

    def _handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if method == "GET" and parts.path == "/cgi-bin/gettoken":
            return self._token(query)
        if method == "POST" and parts.path == "/cgi-bin/message/send":
            return self._send(query, body)
        return 404, {"errcode": 404, "errmsg": "not found"}

    def _token(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.token_delay_seconds:
            time.sleep(self.token_delay_seconds)
        with self._lock:
            self.token_fetches += 1
            failure = self._token_failures.popleft() if self._token_failures else None
            if failure is not None:
                return failure.status, {"errcode": failure.errcode, "errmsg": "injected"}
            if query.get("corpid") != self.corp_id:
                return 200, {"errcode": 40013, "errmsg": "invalid corpid"}
            if query.get("corpsecret") != self.corp_secret:
                return 200, {"errcode": 40001, "errmsg": "invalid credential"}
            now = time.monotonic()
            if self._current is None or self._tokens[self._current] <= now:
                self._current = f"wecom-{uuid.uuid4().hex}"
                self._tokens[self._current] = now + self.token_lifetime
            left = int(self._tokens[self._current] - now)
            return 200, {"errcode": 0, "errmsg": "ok", "access_token": self._current,
                         "expires_in": left}  # fmt: skip

    def _send(self, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self._lock:
            status, answer = self._check_send(query, body)
            if answer["errcode"] != 0:
                self.refused.append(answer["errcode"])
            return status, answer

    def _check_send(self, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        def error(errcode: int, errmsg: str, status: int = 200) -> tuple[int, dict[str, Any]]:
            return status, {"errcode": errcode, "errmsg": errmsg}

        expires = self._tokens.get(query.get("access_token", ""))
        if expires is None:
            return error(40014, "invalid access_token")
        if expires <= time.monotonic():
            return error(42001, "access_token expired")
        if self._failures:
            failure = self._failures.popleft()
            return error(failure.errcode, "injected failure", failure.status)
        try:
            message = json.loads(body)
        except ValueError:
            return error(47001, "data format error")
        if message.get("agentid") != self.agent_id:
            return error(40056, "invalid agentid")
        msgtype = message.get("msgtype")
        content = message.get(msgtype) if msgtype in ("text", "textcard") else None
        if not isinstance(content, dict):
            return error(40008, "invalid message type")
        if msgtype == "text" and not content.get("content"):
            return error(41011, "missing content")
        if msgtype == "textcard" and not (content.get("title") and content.get("url")):
            return error(41011, "missing title or url")
        user = str(message.get("touser", ""))
        if not user or (self.users is not None and user not in self.users):
            return error(81013, "user, department and tag all invalid")
        msgid = uuid.uuid4().hex
        self.sent.append(message | {"msgid": msgid})
        return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid}


def main() -> None:  # pragma: no cover - a developer's tool
    parser = argparse.ArgumentParser(description="Serve a fake WeCom API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--corp-id", default="ww-fake")
    parser.add_argument("--corp-secret", default="fake-secret")
    parser.add_argument("--agent-id", type=int, default=1000002)
    args = parser.parse_args()
    fake = FakeWeCom(
        corp_id=args.corp_id, corp_secret=args.corp_secret, agent_id=args.agent_id, port=args.port
    )
    print(f"fake WeCom API on {fake.start()} (Ctrl+C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
