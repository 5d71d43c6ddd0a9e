"""Templates (sandboxed rendering, preview, per-chain wording), the settings' validation,
and plugins' write-only credentials."""

from __future__ import annotations

from datetime import date, timedelta

from loyalty.helpers import new_phone
from nestpoint.plugins.api import ConfigSchemaRegistry, hookimpl


async def test_built_in_templates_exist_in_both_locales_and_the_chain_can_reword_them(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    r = await client.get("/api/v1/messaging/templates", headers=tenant.hq())
    assert r.status_code == 200, r.text
    listing = r.json()
    keys = {(t["key"], t["locale"]) for t in listing["items"]}
    assert ("points_expiring", "zh-CN") in keys
    assert ("points_expiring", "en") in keys
    assert "member_name" in listing["variables"]

    body = {"subject": "提醒", "body": "{{ member_name }}，{{ points_expiring }} 分将过期"}
    r = await client.put(
        "/api/v1/messaging/templates/points_expiring/zh-CN", json=body, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom"] is True
    r = await client.post(
        "/api/v1/messaging/preview",
        json={"key": "points_expiring", "locale": "zh-CN"},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["body"] == "王芳，300 分将过期"  # the sample values

    r = await client.delete(
        "/api/v1/messaging/templates/points_expiring/zh-CN", headers=tenant.hq()
    )
    assert r.status_code == 204, r.text
    r = await client.post(
        "/api/v1/messaging/preview",
        json={"key": "points_expiring", "locale": "zh-CN"},
        headers=tenant.hq(),
    )
    assert "积分将于" in r.json()["body"]


async def test_a_template_with_a_syntax_error_is_refused_naming_the_field(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    r = await client.put(
        "/api/v1/messaging/templates/hello/en",
        json={"body": "Hi {{ member_name "},
        headers=tenant.hq(),
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body"]
    r = await client.put(
        "/api/v1/messaging/templates/hello/en",
        json={"body": "ok", "html": "{% if %}"},
        headers=tenant.hq(),
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["html"]


async def test_the_sandbox_keeps_a_template_from_reaching_python_objects(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    body = {"body": "{{ member_name.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}"}
    r = await client.post("/api/v1/messaging/preview", json=body, headers=tenant.hq())
    assert r.status_code in (200, 422), r.text
    assert "class" not in r.text.replace("__class__", "")


async def test_a_preview_for_a_member_renders_their_data_and_escapes_html(
    client, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    r = await client.post(
        "/api/v1/members",
        json={
            "phone": new_phone(),
            "name": "<b>李</b>",
            "children": [{"birth_date": (date.today() - timedelta(days=200)).isoformat()}],
            "guardian_consent": {"granted": True, "source": "till"},
        },
        headers=tenant.hq(),
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    body = {
        "member_id": member_id,
        "locale": "en",
        "body": "{{ member_name }} / {{ child_stage }} / {{ points_balance }} / {{ extra }}",
        "html": "<p>{{ member_name }}</p>",
        "params": {"extra": "x"},
    }
    r = await client.post("/api/v1/messaging/preview", json=body, headers=tenant.hq())
    assert r.status_code == 200, r.text
    rendered = r.json()
    assert rendered["body"] == "<b>李</b> / 6-12m / 0 / x"
    assert rendered["html"] == "<p>&lt;b&gt;李&lt;/b&gt;</p>"
    r = await client.post(
        "/api/v1/messaging/preview",
        json=body | {"member_id": "00000000-0000-0000-0000-000000000000"},
        headers=tenant.hq(),
    )
    assert r.status_code == 404, r.text


async def test_settings_are_validated_naming_the_field(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    # A schema mismatch is a 400, a rule across fields a 422; both name the field.
    for body, status, field in (
        ({"channel_order": ["sms", "sms"]}, 422, "body"),
        ({"transactional": {"nonsense": True}}, 422, "body"),
        ({"frequency_cap": {"count": 0, "days": 7}}, 400, "frequency_cap.count"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, 400, "quiet_hours.start"),
    ):
        r = await client.put("/api/v1/messaging/settings", json=body, headers=tenant.hq())
        assert r.status_code == status, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    r = await client.get("/api/v1/messaging/settings", headers=tenant.hq())
    assert r.status_code == 200
    assert r.json()["channel_order"] == ["miniprogram", "wecom", "sms", "email"]


class SecretPlugin:
    @hookimpl
    def nestpoint_register_config_schema(self, registry: ConfigSchemaRegistry) -> None:
        registry.secret("api_key", "The gateway's key")


async def test_a_plugin_secret_is_write_only_encrypted_and_audited(
    client, make_tenant, channels, host, database_env
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.plugins.api import PluginContext, plugin_secret
    from nestpoint.plugins.models import PluginSecret

    info = host.register_plugin(SecretPlugin(), "fake_secret")
    assert info.loaded, info.reason
    try:
        tenant = await make_tenant()
        base = "/api/v1/tenant/plugins/fake_secret/secrets"
        r = await client.get(base, headers=tenant.hq())
        assert r.status_code == 200, r.text
        assert r.json()["items"] == [
            {
                "name": "api_key",
                "description": "The gateway's key",
                "set": False,
                "updated_at": None,
                "updated_by": None,
            }
        ]
        r = await client.put(f"{base}/api_key", json={"value": "s3cr3t-value"}, headers=tenant.hq())
        assert r.status_code == 200, r.text
        assert "s3cr3t-value" not in r.text
        assert r.json()["items"][0]["set"] is True
        r = await client.put(f"{base}/other", json={"value": "x"}, headers=tenant.hq())
        assert r.status_code == 404, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["name"]
        r = await client.put(f"{base}/api_key", json={"value": ""}, headers=tenant.hq())
        assert r.status_code == 400, r.text
        store = {"Authorization": f"Bearer {tenant.store_keys['S1']}"}
        r = await client.put(f"{base}/api_key", json={"value": "x"}, headers=store)
        assert r.status_code == 403, r.text

        context = PluginContext("fake_secret", tenant.id, None, {})
        assert await plugin_secret(context, "api_key") == "s3cr3t-value"
        with tenant_context(tenant.id):
            async with scoped_session() as session:
                stored = (await session.scalars(select(PluginSecret.value_enc))).all()
        assert len(stored) == 1
        assert "s3cr3t" not in stored[0]
        other = await make_tenant()
        assert (
            await plugin_secret(PluginContext("fake_secret", other.id, None, {}), "api_key") is None
        )

        r = await client.get(
            "/api/v1/audit", params={"subject_type": "plugin"}, headers=tenant.hq()
        )
        assert r.status_code == 200, r.text
        assert "s3cr3t" not in r.text
        assert "plugin.secret_set" in r.text
        r = await client.delete(f"{base}/api_key", headers=tenant.hq())
        assert r.status_code == 200, r.text
        assert await plugin_secret(context, "api_key") is None
    finally:
        host.unregister("fake_secret")
