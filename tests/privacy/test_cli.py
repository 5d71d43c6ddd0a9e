"""The operator's commands for members' rights: a member's data copy to a file, erasure,
the retention rules and a run of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from commands import nestpoint as _nestpoint
from privacy.test_erasure import enrol_full


async def test_copy_erase_and_retention_from_the_command_line(  # type: ignore[no-untyped-def]
    client: Any, make_tenant: Any, tmp_path: Path
) -> None:
    t = await make_tenant()
    member = await enrol_full(client, t)
    copy = tmp_path / "member.json"
    done = await _nestpoint(
        "export", "member-data", member["id"], "--tenant", t.slug, "--output", str(copy),
        "--reason", "PIPL access request #5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(copy.read_text(encoding="utf-8"))
    assert (data["member"]["id"], data["member"]["name"]) == (member["id"], "王芳")

    done = await _nestpoint("privacy", "erase", member["id"], "--tenant", t.slug, "--reason", "#6")
    assert done.returncode == 0, done.stderr
    assert f"member {member['id']} erased" in done.stdout
    assert "children 1, identities 2" in done.stdout
    r = await client.get(f"/api/v1/members/{member['id']}/erasure", headers=t.hq())
    assert (r.status_code, r.json()["reason"]) == (200, "#6")
    # Nothing personal is left to copy.
    done = await _nestpoint(
        "export", "member-data", member["id"], "--tenant", t.slug, "--output", str(copy),
        "--reason", "again",
    )  # fmt: skip
    assert done.returncode == 2
    assert "no such member" in done.stderr

    done = await _nestpoint("privacy", "policy", "--tenant", t.slug, "--inactive-years", "3")
    assert done.returncode == 0, done.stderr
    assert "inactive members erased after: 3 years" in done.stdout
    assert "children's data erased at age: never" in done.stdout
    r = await client.get("/api/v1/privacy/policy", headers=t.hq())
    assert r.json() == {"inactive_member_years": 3, "child_data_age_years": None}
    done = await _nestpoint("privacy", "retention", "--tenant", t.slug, "--preview")
    assert done.returncode == 0, done.stderr
    assert "due: 0 members, 0 children" in done.stdout
    done = await _nestpoint("privacy", "retention", "--tenant", t.slug)
    assert done.returncode == 0, done.stderr
    assert "0 members and 0 children erased" in done.stdout
