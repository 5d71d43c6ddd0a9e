"""Personal-data keys: every process sharing a database holds the same configured keys.

Outside the embedded SQLite default a process without them refuses to start (one message
naming both variables); two processes with the same keys read, find and deduplicate each
other's members; the embedded default's key file is made once even by racing processes;
``nestpoint members new-key`` prints first keys or the steps of a rotation.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import httpx
import pytest

from loyalty.helpers import new_phone
from nestpoint.api.app import create_app
from nestpoint.members import pii
from nestpoint.settings import Settings

SERVER_URL = "postgresql+asyncpg://nestpoint_app@127.0.0.1:5432/nestpoint"
VARIABLES = ("NESTPOINT_PII_KEYS", "NESTPOINT_PII_HASH_KEY")


def without_keys(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.pop("NESTPOINT_REDIS_URL", None)
    return env | extra


def names_both_variables(message: str) -> None:
    for variable in VARIABLES:
        assert variable in message, message


# ------------------------------------------------------------------ refusing to start


def test_a_server_database_without_keys_refuses_to_start(tmp_path) -> None:
    for keys, hash_key in ((None, None), (f"k1:{pii.new_key()}", None), (None, pii.new_key())):
        settings = Settings(
            database_url=SERVER_URL, data_dir=tmp_path, pii_keys=keys, pii_hash_key=hash_key
        )
        with pytest.raises(pii.PiiKeyError) as refused:
            create_app(settings, configure_logs=False)
        names_both_variables(str(refused.value))
    assert not (tmp_path / "pii-keys.json").exists(), "no key file for a server database"
    # Configured, it starts.
    good = Settings(
        database_url=SERVER_URL, pii_keys=f"k1:{pii.new_key()}", pii_hash_key=pii.new_key()
    )
    assert pii.keyring(good).active_id == "k1"


@pytest.mark.parametrize(
    ("keys", "hash_key", "complaint"),
    [
        ("k1:bm90IDMyIGJ5dGVz", "HASH", "32 bytes"),
        ("k1:%%%", "HASH", "not base64"),
        ("k 1:KEY", "HASH", "'<id>:<base64 of 32 bytes>'"),
        ("k1:KEY,k1:KEY", "HASH", "twice"),
        ("k1:KEY", "c2hvcnQ=", "NESTPOINT_PII_HASH_KEY must be"),
    ],
)
def test_malformed_keys_refuse_to_start(keys: str, hash_key: str, complaint: str) -> None:
    keys = keys.replace("KEY", pii.new_key())
    hash_key = hash_key.replace("HASH", pii.new_key())
    settings = Settings(database_url=SERVER_URL, pii_keys=keys, pii_hash_key=hash_key)
    with pytest.raises(pii.PiiKeyError) as refused:
        pii.keyring(settings)
    assert complaint in str(refused.value)


@pytest.mark.parametrize("command", ["serve", "worker", "members rotate-keys"])
def test_the_command_refuses_to_start_without_keys(command: str) -> None:
    run = subprocess.run(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "nestpoint.cli", *command.split()],
        env=without_keys(NESTPOINT_DATABASE_URL=SERVER_URL),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("nestpoint: cannot start: personal-data keys are not configured")
    names_both_variables(run.stderr)
    assert "Traceback" not in run.stderr


# ------------------------------------------------------------------ the embedded key file


def test_the_embedded_default_lives_in_the_data_dir(tmp_path, monkeypatch) -> None:
    for variable in ("NESTPOINT_DATABASE_URL", "NESTPOINT_DATA_DIR", *VARIABLES):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # the default data_dir is var/ of the working directory
    settings = Settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'nestpoint.db'}"
    ring = pii.keyring(settings)
    data = json.loads((tmp_path / "var" / "pii-keys.json").read_text())
    assert ring.active_id == data["pii_keys"].split(":")[0]


RACE = """
import sys, time
from pathlib import Path
from nestpoint.members import pii
start = float(sys.argv[2])
while time.time() < start:
    pass
print("|".join(pii._dev_keys(Path(sys.argv[1]))))
"""


def test_racing_processes_make_one_key_file(tmp_path) -> None:
    path = tmp_path / "var" / "pii-keys.json"
    start = time.time() + 3  # after every process has imported: they race for the file
    processes = [
        subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", RACE, str(path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    seen = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    data = json.loads(path.read_text())
    assert seen == {f"{data['pii_keys']}|{data['pii_hash_key']}"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["pii-keys.json"]


# ------------------------------------------------------------------ two processes, one database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A separate API process (uvicorn) on the test database, as another pod would be."""
    port = free_port()
    # The server's log goes to a file, not a pipe: a full pipe would stall the server.
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "uvicorn", "nestpoint.api.asgi:app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                await until_it_answers(client, process, log)
                yield client
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def until_it_answers(
    client: httpx.AsyncClient, process: asyncio.subprocess.Process, log: IO[bytes]
) -> None:
    for _ in range(300):
        if process.returncode is not None:
            log.seek(0)
            pytest.fail(f"the API process ended: {log.read()!r}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail("the API process did not answer")


async def test_two_processes_with_the_same_keys_share_members(make_tenant, database_env) -> None:
    t = await make_tenant(("S1",))
    env = without_keys(**database_env) | {
        "NESTPOINT_PII_KEYS": f"pod1:{pii.new_key()}",
        "NESTPOINT_PII_HASH_KEY": pii.new_key(),
        "NESTPOINT_LOG_LEVEL": "WARNING",
    }
    phone = new_phone()
    async with api_process(env) as first, api_process(env) as second:
        r = await first.post(
            "/api/v1/members", json={"phone": phone, "name": "王芳"}, headers=t.hq()
        )
        assert r.status_code == 201, r.text
        member_id = r.json()["id"]
        # The other process reads what the first wrote ...
        r = await second.get(f"/api/v1/members/{member_id}", headers=t.hq())
        assert r.status_code == 200, r.text
        assert (r.json()["phone"], r.json()["name"]) == (f"+86{phone}", "王芳")
        r = await second.get("/api/v1/members/lookup", params={"phone": phone}, headers=t.hq())
        assert r.status_code == 200, r.text
        assert r.json()["id"] == member_id
        r = await second.get("/api/v1/members", headers=t.hq())
        assert r.status_code == 200, r.text
        assert [m["id"] for m in r.json()["items"]] == [member_id]
        # ... and refuses the same phone again, in any spelling.
        r = await second.post("/api/v1/members", json={"phone": f"+86 {phone}"}, headers=t.hq())
        assert r.status_code == 409, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["phone"]
        # Both processes wrote and read with the configured keys: no key file was needed.
        r = await first.get(f"/api/v1/members/{member_id}", headers=t.hq())
        assert r.json()["phone"] == f"+86{phone}"


# ------------------------------------------------------------------ nestpoint members new-key


def test_new_key_prints_first_keys_then_a_rotation() -> None:
    unset = Settings(database_url=SERVER_URL, pii_keys=None, pii_hash_key=None)
    first = pii.new_key_plan(unset, "k1")
    values = dict(line.split("=", 1) for line in first if not line.startswith("#"))
    assert set(values) == set(VARIABLES)
    configured = Settings(
        database_url=SERVER_URL,
        pii_keys=values["NESTPOINT_PII_KEYS"],
        pii_hash_key=values["NESTPOINT_PII_HASH_KEY"],
    )
    ring = pii.keyring(configured)
    sealed = ring.encrypt("+8613800000000")

    rotation = [line for line in pii.new_key_plan(configured, "k2") if not line.startswith("#")]
    learn, switch = (line.split("=", 1)[1] for line in rotation)
    assert [k.split(":")[0] for k in learn.split(",")] == ["k1", "k2"]
    assert [k.split(":")[0] for k in switch.split(",")] == ["k2", "k1"]
    assert set(learn.split(",")) == set(switch.split(","))
    for spec in (learn, switch):
        step = pii.keyring(configured.model_copy(update={"pii_keys": spec}))
        assert step.decrypt(sealed) == "+8613800000000"  # older rows stay readable
        assert step.lookup_hash("x") == ring.lookup_hash("x")  # the hash key is kept
    assert pii.keyring(configured.model_copy(update={"pii_keys": switch})).active_id == "k2"
    with pytest.raises(pii.PiiKeyError):
        pii.new_key_plan(configured, "k1")  # taken


def test_new_key_command_prints_variables(tmp_path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "nestpoint.cli", "members", "new-key"],
        env=without_keys(NESTPOINT_DATABASE_URL=SERVER_URL),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    values = dict(line.split("=", 1) for line in run.stdout.splitlines() if line[:1] != "#")
    settings = Settings(
        database_url=SERVER_URL,
        pii_keys=values["NESTPOINT_PII_KEYS"],
        pii_hash_key=values["NESTPOINT_PII_HASH_KEY"],
    )
    assert pii.keyring(settings).active_id.startswith("k")


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+8613812345678", "+86 138****5678"),  # mainland mobile
        ("+14155552671", "+1 415***2671"),  # a one-digit country code
        ("+85291234567", "+852 912*4567"),  # a three-digit one
        ("+8526123456", "+852 *****56"),  # a short national number keeps two digits
    ],
)
def test_a_masked_phone_keeps_the_country_code_and_a_few_digits(e164: str, masked: str) -> None:
    assert pii.mask_phone(e164) == masked
