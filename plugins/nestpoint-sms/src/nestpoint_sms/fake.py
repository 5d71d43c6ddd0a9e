"""A local fake of the SMS gateway, for tests, end-to-end checks and the demo.

A real HTTP server on 127.0.0.1 (``http.server`` in a thread; port 0 picks a free port)::

    from nestpoint_sms.fake import FakeSmsGateway

    with FakeSmsGateway(access_key_id="LTAI-test", access_key_secret="s3cret") as gateway:
        ...  # config {"base_url": gateway.url, "access_key_id": "LTAI-test", ...}
        gateway.sent        # the accepted sends: phone, sign_name, template_code, params...
        gateway.requests    # every request, refused ones included (status, code)

``plugin_config(**extra)`` and ``plugin_secrets()`` are what to enable the plugin with and
set for it (through the API) so that it sends here.

It checks a send as the real gateway would: the signature (its own implementation of the
documented scheme, so a client that drifts from the documentation fails here), the
timestamp (±300 s), the nonce (once), the access key id; then the number, the sign name
and the template code. Switches inject failures:

- ``fail_next(status=503, code="isp.SYSTEM_ERROR", times=1)``: the next sends answer this;
- ``delay_seconds``: wait before answering (a client's timeout);
- ``invalid_numbers``, ``templates``, ``sign_names``: what it refuses
  (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.SMS_SIGNATURE_ILLEGAL``).

Delivery receipts: ``receipt(biz_id, delivered=True)`` makes one from a recorded send,
``signed_receipts(reports)`` signs them as the gateway does (headers, body) and
``push_receipts(url, reports)`` POSTs them; with ``callback_url`` set, every accepted send
is reported ``DELIVERED`` there ``callback_delay_seconds`` later (the demo's loop).

``python -m nestpoint_sms.fake --port 8701`` serves one until Ctrl+C.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_MAX_SKEW = 300


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its timeout) while the fake was waiting


@dataclass
class Request:
    """One request the fake answered."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    code: str


@dataclass
class Sent:
    """One send the fake accepted."""

    biz_id: str
    phone: str
    sign_name: str
    template_code: str
    params: dict[str, Any]
    out_id: str
    access_key_id: str


@dataclass
class _Failure:
    status: int
    code: str


@dataclass
class FakeSmsGateway:
    """The fake gateway; ``start()`` returns its URL, ``stop()`` ends it."""

    access_key_id: str = "LTAI-fake"
    access_key_secret: str = "fake-secret"  # noqa: S105 - a test double's own key
    callback_secret: str | None = None
    port: int = 0
    invalid_numbers: set[str] = field(default_factory=set)
    templates: set[str] | None = None  # None: any template code
    sign_names: set[str] | None = None  # None: any sign name
    delay_seconds: float = 0.0
    callback_url: str | None = None
    callback_delay_seconds: float = 1.0
    sent: list[Sent] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: set[str] = set()
        self._failures: deque[_Failure] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake gateway is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake._handle("POST", self.path, body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read .requests

        server = _Server(("127.0.0.1", self.port), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
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

    def __enter__(self) -> FakeSmsGateway:
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
        """The sms plugin's configuration for this fake (any purpose: ``SMS_DEFAULT``)."""
        return {
            "base_url": self.url,
            "access_key_id": self.access_key_id,
            "sign_name": "Nestpoint",
            "default_template": "SMS_DEFAULT",
        } | extra

    def plugin_secrets(self) -> dict[str, str]:
        """The plugin secrets to set for this fake (``PUT …/secrets/<name>``)."""
        secrets = {"access_key_secret": self.access_key_secret}
        if self.callback_secret:
            secrets["callback_secret"] = self.callback_secret
        return secrets

    # ------------------------------------------------------------------ switches

    def fail_next(self, status: int = 503, code: str = "isp.SYSTEM_ERROR", times: int = 1) -> None:
        """The next ``times`` sends (with a valid signature) answer ``status`` and ``code``."""
        with self._lock:
            self._failures.extend(_Failure(status, code) for _ in range(times))

    # ------------------------------------------------------------------ the gateway

    def _handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        status, answer = self._answer(method, parts.path, params)
        with self._lock:
            self.requests.append(Request(method, parts.path, params, status, answer["Code"]))
        if answer["Code"] == "OK" and self.callback_url:
            report = self.receipt(answer["BizId"])
            url = self.callback_url
            threading.Thread(target=self._report_later, args=(url, [report]), daemon=True).start()
        return status, answer

    def _answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        request_id = uuid.uuid4().hex

        def error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
            return status, {"Code": code, "Message": message, "RequestId": request_id}

        if path != "/sms/send" or method != "POST":
            return error(404, "InvalidAction.NotFound", "no such action")
        if params.get("AccessKeyId") != self.access_key_id:
            return error(403, "InvalidAccessKeyId.NotFound", "unknown access key id")
        if params.get("SignatureMethod") != "HMAC-SHA256":
            return error(400, "InvalidParameter", "SignatureMethod must be HMAC-SHA256")
        try:
            stamp = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return error(400, "InvalidTimeStamp.Format", "bad Timestamp")
        if abs(time.time() - stamp.replace(tzinfo=UTC).timestamp()) > _MAX_SKEW:
            return error(403, "InvalidTimeStamp.Expired", "Timestamp out of range")
        expected = _signature(self.access_key_secret, method, path, params)
        if not hmac.compare_digest(expected, params.get("Signature", "")):
            return error(403, "SignatureDoesNotMatch", "the signature does not match")
        nonce = params.get("SignatureNonce", "")
        with self._lock:
            if not nonce or nonce in self._nonces:
                return error(403, "SignatureNonceUsed", "the nonce was used")
            self._nonces.add(nonce)
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return error(failure.status, failure.code, "injected failure")
        phone = params.get("PhoneNumbers", "")
        if not _PHONE.match(phone) or phone in self.invalid_numbers:
            return error(200, "isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
        sign_name = params.get("SignName", "")
        if not sign_name or (self.sign_names is not None and sign_name not in self.sign_names):
            return error(200, "isv.SMS_SIGNATURE_ILLEGAL", "unknown sign name")
        template = params.get("TemplateCode", "")
        if not template or (self.templates is not None and template not in self.templates):
            return error(200, "isv.SMS_TEMPLATE_ILLEGAL", "unknown template")
        try:
            template_params = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return error(200, "isv.INVALID_JSON_PARAM", "TemplateParam is not JSON")
        biz_id = f"{int(time.time())}^{uuid.uuid4().int % 10**12:012d}"
        with self._lock:
            self.sent.append(
                Sent(
                    biz_id=biz_id,
                    phone=phone,
                    sign_name=sign_name,
                    template_code=template,
                    params=template_params,
                    out_id=params.get("OutId", ""),
                    access_key_id=params["AccessKeyId"],
                )
            )
        return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}

    # ------------------------------------------------------------------ receipts

    def receipt(
        self, biz_id: str, *, delivered: bool = True, err_code: str | None = None
    ) -> dict[str, Any]:
        """A receipt (the gateway's shape) for a send it accepted."""
        with self._lock:
            sent = next((s for s in self.sent if s.biz_id == biz_id), None)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return {
            "phone_number": sent.phone if sent else "",
            "send_time": now,
            "report_time": now,
            "success": delivered,
            "err_code": err_code or ("DELIVERED" if delivered else "UNDELIV"),
            "err_msg": "用户接收成功" if delivered else "用户未接收",
            "sms_size": "1",
            "biz_id": biz_id,
            "out_id": sent.out_id if sent else "",
        }

    def signed_receipts(
        self,
        reports: list[dict[str, Any]],
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body of a receipt callback, signed as the gateway signs them
        (``timestamp``: Unix seconds, default now; ``secret``: default the callback
        secret, or the access key secret)."""
        body = json.dumps(reports, ensure_ascii=False).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = uuid.uuid4().hex
        key = secret or self.callback_secret or self.access_key_secret
        text = f"{stamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}"
        signature = base64.b64encode(hmac.new(key.encode(), text.encode(), "sha256").digest())
        headers = {
            "content-type": "application/json",
            "x-sms-timestamp": stamp,
            "x-sms-nonce": nonce,
            "x-sms-signature": signature.decode(),
        }
        return headers, body

    def _report_later(self, url: str, reports: list[dict[str, Any]]) -> None:
        time.sleep(self.callback_delay_seconds)  # after the sender recorded the BizId
        self.push_receipts(url, reports)

    def push_receipts(self, url: str, reports: list[dict[str, Any]]) -> int:
        """POST signed receipts to ``url`` (the core's callback); returns the status."""
        headers, body = self.signed_receipts(reports)
        try:
            return httpx.post(url, content=body, headers=headers, timeout=5).status_code
        except httpx.HTTPError:
            return 0


def _signature(secret: str, method: str, path: str, params: dict[str, str]) -> str:
    """The documented scheme, written out again on the gateway's side."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    text = f"{method}\n{path}\n{canonical}"
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), "sha256").digest()).decode()


def main() -> None:  # pragma: no cover - a developer's tool
    parser = argparse.ArgumentParser(description="Serve a fake SMS gateway on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--access-key-id", default="LTAI-fake")
    parser.add_argument("--access-key-secret", default="fake-secret")
    parser.add_argument("--callback-url", default=None)
    args = parser.parse_args()
    fake = FakeSmsGateway(
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        port=args.port,
        callback_url=args.callback_url,
    )
    print(f"fake SMS gateway on {fake.start()} (Ctrl+C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
