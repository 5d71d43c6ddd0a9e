"""A local fake of WeChat's subscribe-message API, for tests, end-to-end checks and the demo.

A real HTTP server on 127.0.0.1 (``http.server`` in a thread; port 0 picks a free port)::

    from nestpoint_miniprogram.fake import FakeWeChat

    with FakeWeChat(app_id="wx0123456789abcdef", app_secret="s3cret") as wechat:
        ...  # config {"base_url": wechat.url, "app_id": "wx0123456789abcdef", ...}
        wechat.sent           # the subscribe messages it accepted (JSON bodies, with msgid)
        wechat.token_fetches  # how many times a token was asked for (either endpoint)

``plugin_config(templates=...)`` and ``plugin_secrets()`` are what to enable the plugin
with and set for it (through the API) so that it sends here.

Tokens: ``POST /cgi-bin/stable_token`` answers the same token while it is valid (a new one
with ``force_refresh``); ``GET /cgi-bin/token`` a new one each time (the previous ones stay
valid five minutes more, as WeChat's do). ``POST /cgi-bin/message/subscribe/send`` checks
the token (40001 unknown, 42001 expired), the openid (40003 when ``openids`` is given and
lacks it), the template (40037 when ``templates`` is given and lacks it, 47003 for a data
key it does not have or an empty value or a ``thing`` over 20 characters) and the
member's subscriptions (43101 when ``subscriptions`` is given and the openid has none
left; each accepted message uses one). Switches inject failures:

- ``expire_tokens()`` (42001) / ``revoke_tokens()`` (40001): every token issued so far;
- ``fail_next(errcode=-1, times=1, status=200)``: the next sends answer this errcode (or
  HTTP ``status``); ``fail_token_next(...)``: the same for the next token requests;
- ``delay_seconds`` / ``token_delay_seconds``: wait before answering a send / a token.

``python -m nestpoint_miniprogram.fake --port 8703`` serves one until Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_GRACE = 300  # seconds a classic token stays valid after a new one is issued


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its timeout) while the fake was waiting


@dataclass
class _Failure:
    errcode: int
    status: int


@dataclass
class FakeWeChat:
    """The fake WeChat API; ``start()`` returns its URL, ``stop()`` ends it."""

    app_id: str = "wx-fake"
    app_secret: str = "fake-secret"  # noqa: S105 - a test double's own secret
    openids: set[str] | None = None  # None: every openid exists
    templates: dict[str, set[str]] | None = None  # template id -> its data keys; None: any
    subscriptions: dict[str, int] | None = None  # openid -> messages left; None: unlimited
    token_lifetime: int = 7200
    port: int = 0
    delay_seconds: float = 0.0
    token_delay_seconds: float = 0.0
    sent: list[dict[str, Any]] = field(default_factory=list)
    token_fetches: int = 0
    token_endpoints: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # errcodes of refused sends

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expires at (monotonic)
        self._stable: str | None = None
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

    def __enter__(self) -> FakeWeChat:
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
        """The miniprogram plugin's configuration for this fake; pass ``templates`` (the
        plugin's mapping of purposes to template ids and data keys)."""
        return {"base_url": self.url, "app_id": self.app_id} | extra

    def plugin_secrets(self) -> dict[str, str]:
        """The plugin secrets to set for this fake (``PUT …/secrets/<name>``)."""
        return {"app_secret": self.app_secret}

    # ------------------------------------------------------------------ switches

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (42001)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)
            self._stable = None

    def revoke_tokens(self) -> None:
        """Every token issued so far is unknown from now on (40001)."""
        with self._lock:
            self._tokens.clear()
            self._stable = None

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
        if method == "GET" and parts.path == "/cgi-bin/token":
            return self._token("classic", query)
        if method == "POST" and parts.path == "/cgi-bin/stable_token":
            try:
                return self._token("stable", json.loads(body))
            except ValueError:
                return 200, {"errcode": 47001, "errmsg": "data format error"}
        if method == "POST" and parts.path == "/cgi-bin/message/subscribe/send":
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            with self._lock:
                status, answer = self._check_send(query, body)
                if answer["errcode"] != 0:
                    self.refused.append(answer["errcode"])
                return status, answer
        return 404, {"errcode": 404, "errmsg": "not found"}

    def _token(self, endpoint: str, given: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.token_delay_seconds:
            time.sleep(self.token_delay_seconds)
        with self._lock:
            self.token_fetches += 1
            self.token_endpoints.append(endpoint)
            failure = self._token_failures.popleft() if self._token_failures else None
            if failure is not None:
                return failure.status, {"errcode": failure.errcode, "errmsg": "injected"}
            if given.get("grant_type") != "client_credential":
                return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
            if given.get("appid") != self.app_id:
                return 200, {"errcode": 40013, "errmsg": "invalid appid"}
            if given.get("secret") != self.app_secret:
                return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
            now = time.monotonic()
            if endpoint == "classic":
                for token, expires in self._tokens.items():
                    self._tokens[token] = min(expires, now + _GRACE)
                token = f"wx-{uuid.uuid4().hex}"
                self._tokens[token] = now + self.token_lifetime
            else:
                stable = self._stable
                if given.get("force_refresh") or stable is None or self._tokens[stable] <= now:
                    stable = self._stable = f"wxs-{uuid.uuid4().hex}"
                    self._tokens[stable] = now + self.token_lifetime
                token = stable
            left = int(self._tokens[token] - now)
            return 200, {"access_token": token, "expires_in": left}

    def _check_send(self, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        def error(errcode: int, errmsg: str, status: int = 200) -> tuple[int, dict[str, Any]]:
            return status, {"errcode": errcode, "errmsg": errmsg}

        expires = self._tokens.get(query.get("access_token", ""))
        if expires is None:
            return error(40001, "invalid credential, access_token is invalid or not latest")
        if expires <= time.monotonic():
            return error(42001, "access_token expired")
        if self._failures:
            failure = self._failures.popleft()
            return error(failure.errcode, "injected failure", failure.status)
        try:
            message = json.loads(body)
        except ValueError:
            return error(47001, "data format error")
        openid = str(message.get("touser", ""))
        if not openid or (self.openids is not None and openid not in self.openids):
            return error(40003, "invalid openid")
        template_id = str(message.get("template_id", ""))
        if not template_id or (self.templates is not None and template_id not in self.templates):
            return error(40037, "invalid template_id")
        data = message.get("data")
        if not isinstance(data, dict) or not data:
            return error(47003, "argument invalid! data is empty")
        keys = self.templates.get(template_id) if self.templates is not None else None
        for key, item in data.items():
            value = item.get("value") if isinstance(item, dict) else None
            if keys is not None and key not in keys:
                return error(47003, f"argument invalid! data.{key} is unknown")
            if not isinstance(value, str) or not value:
                return error(47003, f"argument invalid! data.{key}.value is empty")
            if re.match(r"^thing[0-9]+$", key) and len(value) > 20:
                return error(47003, f"argument invalid! data.{key}.value exceeds limit")
        if message.get("miniprogram_state", "formal") not in ("formal", "trial", "developer"):
            return error(47003, "argument invalid! miniprogram_state")
        if self.subscriptions is not None:
            if self.subscriptions.get(openid, 0) <= 0:
                return error(43101, "user refuse to accept the msg")
            self.subscriptions[openid] -= 1
        msgid = uuid.uuid4().int % 10**16
        self.sent.append(message | {"msgid": msgid})
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": msgid}


def main() -> None:  # pragma: no cover - a developer's tool
    parser = argparse.ArgumentParser(description="Serve a fake WeChat API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8703)
    parser.add_argument("--app-id", default="wx-fake")
    parser.add_argument("--app-secret", default="fake-secret")
    args = parser.parse_args()
    fake = FakeWeChat(app_id=args.app_id, app_secret=args.app_secret, port=args.port)
    print(f"fake WeChat API on {fake.start()} (Ctrl+C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
