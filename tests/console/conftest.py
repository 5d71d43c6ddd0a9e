"""The console served by a real uvicorn process on the run's database (SQLite or
PostgreSQL), once per module, and Debian's chromium driven by Playwright.

Chromium missing: the browser tests fail in CI (``CI=true``; scripts/test.sh installs it
with scripts/install-browser.sh first) and are skipped with a note elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
# NESTPOINT_TEST_NO_BROWSER=1 acts as if it were missing (to check the skip and the failure).
CHROMIUM_FOUND = CHROMIUM.exists() and not os.environ.get("NESTPOINT_TEST_NO_BROWSER")
# Known to work on these machines (/work/shared/TOOLING.md, "Browser tests").
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
PASSWORD = "correct horse battery"


SKIP_NOTE = "chromium is not installed (/usr/bin/chromium): run scripts/install-browser.sh"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Outside CI, browser tests without a browser are skipped: say so at the end."""
    if not CHROMIUM_FOUND and os.environ.get("CI") != "true":
        terminalreporter.write_line(f"NOTE: the console's browser tests were skipped: {SKIP_NOTE}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str


@pytest.fixture(scope="module")
async def served(database_env: dict[str, str]) -> AsyncIterator[Served]:
    """``uvicorn nestpoint.api.asgi:app`` on the test database, for the whole module."""
    port = _free_port()
    env = dict(os.environ) | {"NESTPOINT_LOG_LEVEL": "WARNING", "NESTPOINT_LOG_JSON": "true"}
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe stalls a server
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "uvicorn", "nestpoint.api.asgi:app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(600):
                    if process.returncode is not None:
                        log.seek(0)
                        pytest.fail(f"the console's server ended: {log.read()[-3000:]!r}")
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("the console's server did not answer")
            yield Served(url)
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM_FOUND:
        if os.environ.get("CI") == "true":
            pytest.fail(SKIP_NOTE)
        pytest.skip(SKIP_NOTE)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_page(browser: Any, served: Served):  # type: ignore[no-untyped-def]
    """Factory: a page in a fresh browser context (its own cookies), tablet-sized."""
    contexts: list[Any] = []

    async def make(locale: str = "en-US") -> Any:
        context = await browser.new_context(
            base_url=served.url, locale=locale, viewport={"width": 1024, "height": 768}
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return await context.new_page()

    yield make
    for context in contexts:
        await context.close()


def new_phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


async def sign_in(page: Any, chain: str, login: str, password: str = PASSWORD) -> None:
    await page.goto("/console/login")
    await page.fill("input[name=chain]", chain)
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit].primary")
    await page.wait_for_load_state()
