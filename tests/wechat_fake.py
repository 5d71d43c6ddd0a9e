"""A local fake of WeChat's mini-program API for the member API's tests: the login-code
exchange (``GET /sns/jscode2session``), the access token (``POST /cgi-bin/stable_token``)
and the phone check (``POST /wxa/business/getuserphonenumber``). A real HTTP server on
127.0.0.1 (``http.server`` in a thread, a free port), so the connector's httpx client, its
timeouts and its parsing are the production ones.

    fake = FakeWechatLogin(appid="wx0123456789abcdef", secret="s" * 32).start()
    code = fake.login("o-openid-1", unionid="u-1")  # what wx.login() would give the phone
    phone_code = fake.phone_code("13800138000")  # what the getPhoneNumber button would give
    ...  # NESTPOINT_WECHAT_API_BASE=fake.url
    fake.stop()

Answers as WeChat does (HTTP 200, JSON labelled ``text/plain``):

* ``jscode2session``: ``{openid, session_key, unionid?}`` for a code it issued; errcode
  40029 for a code it never issued, 40163 for one already exchanged, 40013 for another
  appid, 40125 for a wrong secret, and 45011 (the app's minute quota) for the next
  ``rate_limit_next`` requests.
* ``stable_token``: ``{access_token, expires_in}``, the same token while it is valid (a new
  one with ``force_refresh``); 40013 and 40125 as above. ``token_fetches`` counts them.
* ``getuserphonenumber``: ``{errcode: 0, phone_info: {phoneNumber, purePhoneNumber,
  countryCode, watermark: {timestamp, appid}}}`` for a phone code it issued, once; 40001
  for a token it never issued or revoked (``revoke_tokens()``), 42001 for an expired one
  (``expire_tokens()``), 40029 for a code it never issued or already exchanged, and the
  errcodes queued in ``phone_errors`` (e.g. 45011, -1) for the next requests.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
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
    token_lifetime: int = 7200
    requests: list[dict[str, str]] = field(default_factory=list)
    phone_requests: list[dict[str, str]] = field(default_factory=list)
    phone_errors: list[int] = field(default_factory=list)
    token_fetches: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, str | None]] = {}
        self._used: set[str] = set()
        self._phone_codes: dict[str, tuple[str, str]] = {}
        self._tokens: dict[str, float] = {}  # token -> when it expires (monotonic)
        self._stable: str | None = None
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

    def phone_code(self, phone: str, country: str = "86") -> str:
        """A fresh phone code for this phone (as the ``getPhoneNumber`` button gives one)."""
        code = secrets.token_hex(24)
        with self._lock:
            self._phone_codes[code] = (phone, country)
        return code

    def revoke_tokens(self) -> None:
        """Every token issued so far is unknown from now on (40001)."""
        with self._lock:
            self._tokens.clear()
            self._stable = None

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (42001)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)
            self._stable = None

    def answer(self, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(params)
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return {"errcode": 45011, "errmsg": "api minute-quota reach limit mustslower"}
            refused = self._check_app(params)
            if refused:
                return refused
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

    def _check_app(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("appid") != self.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if params.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        return None

    def stable_token(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.token_fetches += 1
            refused = self._check_app(body)
            if refused:
                return refused
            if body.get("grant_type") != "client_credential":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            now = time.monotonic()
            live = self._stable is not None and self._tokens.get(self._stable, 0.0) > now
            if body.get("force_refresh") or not live:
                self._stable = secrets.token_urlsafe(32)
                self._tokens[self._stable] = now + self.token_lifetime
            assert self._stable is not None
            left = int(self._tokens[self._stable] - now)
            return {"access_token": self._stable, "expires_in": left}

    def phone_number(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.phone_requests.append({"access_token": token, "code": str(body.get("code"))})
            if token not in self._tokens:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
            if self._tokens[token] <= time.monotonic():
                return {"errcode": 42001, "errmsg": "access_token expired"}
            if self.phone_errors:
                return {"errcode": self.phone_errors.pop(0), "errmsg": "scripted"}
            found = self._phone_codes.pop(str(body.get("code")), None)
            if found is None:
                return {"errcode": 40029, "errmsg": "invalid code"}
        phone, country = found
        return {
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": phone if country == "86" else f"+{country}{phone}",
                "purePhoneNumber": phone,
                "countryCode": country,
                "watermark": {"timestamp": int(time.time()), "appid": self.appid},
            },
        }

    def start(self) -> FakeWechatLogin:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, answer: dict[str, Any] | None) -> None:
                if answer is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/sns/jscode2session":
                    self._send(None)
                    return
                self._send(fake.answer(dict(parse_qsl(parts.query))))

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send({"errcode": 47001, "errmsg": "data format error"})
                    return
                if parts.path == "/cgi-bin/stable_token":
                    self._send(fake.stable_token(body))
                elif parts.path == "/wxa/business/getuserphonenumber":
                    token = dict(parse_qsl(parts.query)).get("access_token", "")
                    self._send(fake.phone_number(token, body))
                else:
                    self._send(None)

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
