"""A fake SMTP server for tests and demos: it keeps what it receives instead of mailing it.

Needs ``aiosmtpd`` (a development dependency of the workspace, not of the plugin). It runs
its own event loop in a thread, so a synchronous test, an async one or a server process
under test can all send to it::

    from nestpoint_email.fake import FakeSmtp

    with FakeSmtp(username="mailer", password="s3cret") as smtp:   # port 0: a free port
        smtp.refuse("gone@example.com", 550)       # a permanent refusal of that recipient
        smtp.refuse("busy@example.com", 451)       # a temporary one (greylisting)
        ...  # configure the e-mail plugin with host=smtp.host, port=smtp.port, security none
        [received] = smtp.messages
        received.message["Subject"]                # decoded: "积分即将过期"

With ``username``/``password`` set it advertises AUTH (PLAIN and LOGIN, over the plain
connection) and refuses mail from a client that has not logged in with them (530), and a
wrong login with 535.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_REPLIES = {
    421: "421 4.3.2 Service not available, try again later",
    450: "450 4.2.1 Mailbox unavailable, try again later",
    451: "451 4.7.1 Greylisted, please try again later",
    452: "452 4.2.2 Mailbox full",
    550: "550 5.1.1 No such user here",
    551: "551 5.1.6 User not local",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Mailbox name not allowed",
    554: "554 5.7.1 Rejected",
}


@dataclass
class ReceivedMessage:
    """One message the server accepted: the envelope and the raw bytes as sent."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None = None

    @property
    def message(self) -> EmailMessage:
        """The message parsed (policy ``default``: headers decoded, parts iterable)."""
        parsed = email.message_from_bytes(self.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Handler:
    owner: FakeSmtp
    refusals: dict[str, int] = field(default_factory=dict)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Checked here rather than with aiosmtpd's auth_required, which warns about AUTH
        # without TLS: this server is a test double on the loopback interface.
        if self.owner.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self.refusals.get(address.lower())
        if code is not None:
            return _REPLIES.get(code, f"{code} Refused")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or envelope.content or b""
        self.owner.messages.append(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=content if isinstance(content, bytes) else content.encode(),
                login=login.decode() if isinstance(login, bytes) else login,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class FakeSmtp:
    """An SMTP server on ``host``:``port`` (0: a free port, known after :meth:`start`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.messages: list[ReceivedMessage] = []
        self.failed_logins = 0
        self._handler = _Handler(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    # ---- behaviour

    def refuse(self, recipient: str, code: int = 550) -> None:
        """Answer ``code`` (451 temporary, 550 permanent...) to RCPT TO for ``recipient``."""
        self._handler.refusals[recipient.lower()] = code

    def accept(self, recipient: str) -> None:
        """Accept ``recipient`` again."""
        self._handler.refusals.pop(recipient.lower(), None)

    def clear(self) -> None:
        """Forget the messages received."""
        self.messages.clear()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        ):
            return AuthResult(success=True, auth_data=data)
        self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    def _protocol(self) -> SMTP:
        auth = self.username is not None
        return SMTP(
            self._handler,
            hostname="fake-smtp.nestpoint.test",
            enable_SMTPUTF8=True,
            authenticator=self._authenticate if auth else None,
            auth_require_tls=False,
            loop=self._loop,
        )

    # ---- life cycle

    def start(self) -> FakeSmtp:
        """Listen (in a thread of its own); returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake SMTP server is already running")
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._protocol, self.host, self.port)
                )
            except BaseException as exc:  # a port in use: reported by start()
                failure.append(exc)
                ready.set()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-smtp", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop listening and close open connections (the port is then free)."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
