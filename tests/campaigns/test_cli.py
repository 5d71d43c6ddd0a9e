"""``nestpoint campaigns list|run|results`` against a chain's campaign."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner

from nestpoint.cli import app as cli_app
from segments.helpers import enrol


def _cli(*args: str) -> Any:  # its own event loop: a thread without one
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


async def test_list_run_and_results(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    members = [await enrol(client, t) for _ in range(3)]
    body = {
        "code": "weekly-hello",
        "name": "Weekly points",
        "schedule": {"kind": "recurring", "every": "weekly", "weekday": 3, "at": "10:00"},
        "actions": [{"type": "grant_points", "points": 30}],
    }
    assert (await client.post("/api/v1/campaigns", json=body, headers=t.hq())).status_code == 201
    r = await client.post("/api/v1/campaigns/weekly-hello/activate", headers=t.hq())
    assert r.status_code == 200

    for _ in range(2):  # the current week's run, once per member
        result = await asyncio.to_thread(
            _cli, "campaigns", "run", "weekly-hello", "--tenant", t.slug
        )
        assert result.exit_code == 0, result.output
    assert "granted 0, holdout 0, refused 0" in result.stdout

    result = await asyncio.to_thread(_cli, "campaigns", "list", "--tenant", t.slug)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("weekly-hello\tcustom\trunning\trecurring\tpoints 90\t")

    result = await asyncio.to_thread(
        _cli, "campaigns", "results", "weekly-hello", "--tenant", t.slug
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["reach"], got["points_granted"]) == (len(members), 90)

    result = await asyncio.to_thread(_cli, "campaigns", "results", "nope", "--tenant", t.slug)
    assert result.exit_code == 1
