"""A local fake of WeChat's mini-program login API (``GET /sns/jscode2session``), for the
member API's tests: a real HTTP server on 127.0.0.1 (``http.server`` in a thread, a free
port), so the connector's httpx client, its timeouts and its parsing are the production
ones.

    fake = FakeWechatLogin(appid="wx0123456789abcdef", secret="s" * 32).start()
    code = fake.login("o-openid-1", unionid="u-1")  # what wx.login() would give the phone
    ...  # NESTPOINT_WECHAT_API_BASE=fake.url
    fake.stop()

Answers as WeChat does (HTTP 200, JSON labelled ``text/plain``): ``{openid, session_key,
unionid?}`` for a code it issued; errcode 40029 for a code it never issued, 40163 for one
already exchanged, 40013 for another appid, 40125 for a wrong secret, and 45011 (the app's
minute quota) for the next ``rate_limit_next`` requests.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@dataclass
class FakeWechatLogin:
    appid: str = "wx0123456789abcdef"
    secret: str = "0123456789abcdef0123456789abcdef"
    rate_limit_next: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, str | None]] = {}
        self._used: set[str] = set()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def login(self, openid: str, unionid: str | None = None) -> str:
        """A fresh login code for this WeChat user (as ``wx.login()`` gives one)."""
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = (openid, unionid)
        return code

    def answer(self, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(params)
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return {"errcode": 45011, "errmsg": "api minute-quota reach limit mustslower"}
            if params.get("appid") != self.appid:
                return {"errcode": 40013, "errmsg": "invalid appid"}
            if params.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if params.get("grant_type") != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            code = params.get("js_code", "")
            if code in self._used:
                return {"errcode": 40163, "errmsg": "code been used"}
            if code not in self._codes:
                return {"errcode": 40029, "errmsg": "invalid code"}
            self._used.add(code)
            openid, unionid = self._codes.pop(code)
        body: dict[str, Any] = {"openid": openid, "session_key": secrets.token_urlsafe(16)}
        if unionid:
            body["unionid"] = unionid
        return body

    def start(self) -> FakeWechatLogin:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/sns/jscode2session":
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(fake.answer(dict(parse_qsl(parts.query)))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
