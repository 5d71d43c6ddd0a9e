"""Typed settings, read once from the environment (``NESTPOINT_*``).

The defaults are the embedded set-up: a SQLite file under ``var/`` of the working
directory and an in-process Dramatiq broker, so a newcomer runs everything with no server.
Production points ``NESTPOINT_DATABASE_URL`` at PostgreSQL (asyncpg) and
``NESTPOINT_REDIS_URL`` at Redis. No default depends on where the package is installed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _embedded_database_url(data: dict[str, Any]) -> str:
    """The SQLite file in ``data_dir`` (made absolute once, at start-up)."""
    return f"sqlite+aiosqlite:///{Path(data['data_dir']).absolute() / 'nestpoint.db'}"


class Settings(BaseSettings):
    """Every setting, each read from ``NESTPOINT_<NAME>``; ``docs/configuration.md`` is
    generated from these fields (``nestpoint settings reference``; a test compares)."""

    model_config = SettingsConfigDict(env_prefix="NESTPOINT_", extra="ignore")

    # ---- database
    data_dir: Path = Field(
        default=Path("var"),
        description="Folder of the embedded default's files: the SQLite database "
        "(`nestpoint.db`) and, on SQLite without configured keys, the development "
        "personal-data keys (`pii-keys.json`). Relative: to the working directory.",
    )
    database_url: str = Field(
        default_factory=_embedded_database_url,
        description="SQLAlchemy URL the API and workers use. On PostgreSQL (asyncpg), a role "
        "that owns no table, so row-level security applies. Default: the SQLite file "
        "`nestpoint.db` in `data_dir` (the embedded demo).",
    )
    migration_database_url: str | None = Field(
        default=None,
        description="URL migrations run with, as the owner of the tables. Unset: "
        "`database_url` (right for SQLite, which has no roles).",
    )
    app_role: str = Field(
        default="nestpoint_app",
        description="The role the application connects as; migrations grant it its rights "
        "and nothing more.",
    )
    database_pool_size: int = Field(
        default=20,
        description="Connections per process: about the requests one worker serves at once "
        "(32 clients over 2 workers in the benchmark); overflow adds half again for bursts.",
    )
    database_echo: bool = Field(default=False, description="Log every SQL statement.")

    # ---- broker and server
    redis_url: str | None = Field(
        default=None,
        description="Redis URL of the Dramatiq broker. Unset: the in-process broker (the "
        "embedded default and the tests).",
    )
    host: str = Field(default="127.0.0.1", description="Address `nestpoint serve` binds.")
    port: int = Field(default=8000, description="Port `nestpoint serve` listens on.")
    workers: int = Field(default=1, description="Server processes of `nestpoint serve`.")
    log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING...).")
    log_json: bool = Field(default=True, description="Log lines as JSON (else plain text).")

    # ---- plugins
    plugins_allow: list[str] = Field(
        default_factory=list,
        description="Plugin ids the operator allows, as a JSON list (empty: all installed).",
    )
    plugins_block: list[str] = Field(
        default_factory=list, description="Plugin ids the operator blocks, as a JSON list."
    )
    plugins_cache_ttl_seconds: float = Field(
        default=5.0,
        description="How long each process caches a tenant's plugin enablement: a change "
        "applies at once in the process that made it, in others within this time.",
    )
    plugins_event_timeout_seconds: float = Field(
        default=10.0,
        description="Time limit of one event hook call (in the relay); over it, the call "
        "is that plugin's failure.",
    )
    plugins_earn_timeout_seconds: float = Field(
        default=1.0,
        description="Time limit of one earn-rule hook call (on the order's path); over it, "
        "the plugin is skipped for that order.",
    )
    plugins_max_delivery_attempts: int = Field(
        default=15,
        description="Failed deliveries after which a plugin stops receiving an event "
        "(recorded as final).",
    )

    # ---- outbox
    outbox_batch_size: int = Field(
        default=200, description="Events one relay pass claims (it drains batch after batch)."
    )
    outbox_max_backoff_seconds: int = Field(
        default=3600, description="The longest wait between two delivery attempts."
    )

    # ---- personal data
    pii_keys: str | None = Field(
        default=None,
        description="Keys that encrypt personal data at rest: comma-separated "
        "`<key id>:<base64 32-byte key>`; the first encrypts, all decrypt (rotation: put "
        "the new key first, run `nestpoint members rotate-keys`). Every process sharing a "
        "database needs the same; outside the SQLite default a process without them "
        "refuses to start (`nestpoint members new-key` makes them). On SQLite, unset: a "
        "key file in `data_dir`.",
    )
    pii_hash_key: str | None = Field(
        default=None,
        description="Base64 key of the keyed hash used to find a member by exact phone; "
        "the same rules as `pii_keys`.",
    )
    cursor_key: str | None = Field(
        default=None,
        description="Signs pagination cursors (HMAC-SHA256), so a cursor works only on the "
        "listing that issued it. Unset: derived from `pii_hash_key` (set it only to rotate "
        "cursor signing on its own).",
    )

    # ---- caches and jobs
    config_cache_seconds: float = Field(
        default=5.0,
        description="How long each process caches loyalty configuration and API keys: a "
        "change made through another process applies within this time.",
    )
    job_chunk_members: int = Field(
        default=10_000,
        ge=1,
        description="Members per chunk of the set-based jobs (points expiry, tier "
        "evaluation), one transaction each: an order waits on a job's row locks for one "
        "chunk at most.",
    )
    job_chunk_pause_ratio: float = Field(
        default=1.0,
        ge=0.0,
        description="After each chunk a job pauses for this many times the chunk's time "
        "(1.0: it works at most half of its run), leaving the tills their share of a small "
        "machine; 0: no pause (a maintenance window).",
    )

    # ---- payments (Stripe)
    stripe_api_base: str = Field(
        default="https://api.stripe.com",
        description="Base URL of Stripe's API (tests point it at `localstripe`, a local "
        "fake). Each chain's own keys are set through `PUT /api/v1/payments/stripe`.",
    )
    stripe_platform_secret_key: str | None = Field(
        default=None,
        description="Secret key of the platform's own Stripe account, which bills the "
        "chains (tenant billing). Unset: tenant subscriptions are not sent to Stripe.",
    )
    stripe_platform_webhook_secret: str | None = Field(
        default=None,
        description="Signing secret of the platform account's webhook endpoint "
        "(`/webhooks/stripe/platform`); unset: that endpoint refuses every event.",
    )
    payments_lease_seconds: int = Field(
        default=120,
        ge=10,
        description="How long a worker holds a payment or refund while it talks to Stripe; "
        "past it, the sweep takes over (and first looks for what the worker made).",
    )

    # ---- member API (docs/member-api.md)
    member_token_seconds: int = Field(
        default=7200,
        ge=60,
        le=30 * 86400,
        description="Lifetime of a member token (`/api/v1/me/...`), from its issue; the "
        "mini-program asks for a new one when it expires (`expires_at` in the answer).",
    )
    member_code_seconds: int = Field(
        default=60,
        ge=15,
        le=600,
        description="How long a member card's QR code (`GET /api/v1/me/card`) is accepted "
        "by the till (`POST /api/v1/members/lookup-by-code`) after it was made.",
    )
    member_rate_limit: str = Field(
        default="20/second;600/minute",
        description="Requests one member (all their tokens together) may make to "
        "`/api/v1/me/...`, in the notation of `rate_limit`; over it, 429 with `Retry-After`. "
        "Empty: no limit.",
    )
    wechat_api_base: str = Field(
        default="https://api.weixin.qq.com",
        description="Base URL of WeChat's API, for the mini-program login-code exchange "
        "(`sns/jscode2session`); tests point it at a local fake.",
    )
    wechat_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long the login-code exchange waits for WeChat before answering 503.",
    )
    phone_change_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days a phone change (`member_phone_changes`: the new phone sealed, the "
        "code's keyed hash) is kept after it ended (confirmed, cancelled or its code "
        "expired); then the periodic job `members.purge_phone_changes_all` deletes it.",
    )

    # ---- operations
    metrics_enabled: bool = Field(
        default=True,
        description="Expose Prometheus metrics: the API at `/metrics` on its own port, a "
        "worker or scheduler process on `metrics_port`.",
    )
    metrics_port: int = Field(
        default=9100,
        description="Port on which `nestpoint worker` and `nestpoint scheduler` serve "
        "`/metrics` (0: not at all).",
    )
    tracing_enabled: bool = Field(
        default=False,
        description="OpenTelemetry tracing of HTTP requests, SQL and jobs, exported over "
        "OTLP/HTTP to the collector the standard `OTEL_EXPORTER_OTLP_ENDPOINT` names "
        "(`OTEL_SERVICE_NAME` and the other `OTEL_*` variables apply).",
    )
    rate_limit: str = Field(
        default="100/second;3000/minute",
        description="Requests one API key may make, in the `limits` library's notation "
        "(`N/second;M/minute`); over it, 429 with `Retry-After`. Empty: no limit.",
    )
    public_rate_limit: str = Field(
        default="60/minute;1000/hour",
        description="Requests one client address may make to the public routes of plugins "
        "(`/public/...`, no API key: a product's scan-code lookup), in the same notation; "
        "over it, 429 with `Retry-After`. Empty: no limit.",
    )
    console_session_hours: float = Field(
        default=12,
        description="How long a console sign-in lasts at most (`/console/`, docs/console.md), "
        "however busy; then the user signs in again.",
    )
    console_idle_minutes: float = Field(
        default=30,
        description="A console session with no request for this long ends (a store tablet "
        "left signed in).",
    )
    console_login_limit: str = Field(
        default="5/minute;20/hour",
        description="Failed console sign-ins one login may have, in the `limits` notation; "
        "beyond, that login is refused until the window ends (a clear message, audited).",
    )
    console_login_client_limit: str = Field(
        default="30/minute;200/hour",
        description="Failed console sign-ins one client address may have (any login), in the "
        "same notation. Counters live where `rate_limit_storage_url` says.",
    )
    rate_limit_storage_url: str | None = Field(
        default=None,
        description="Where the rate-limit counters live (`memory://`, `redis://...`). "
        "Unset: the broker's Redis (`redis_url`), so every process shares them; in "
        "memory (per process) without Redis.",
    )
    scheduler_lock_id: int = Field(
        default=7_301_001,
        description="PostgreSQL advisory lock the scheduler replicas elect their leader "
        "with: only the holder enqueues periodic jobs.",
    )

    @property
    def owner_database_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reference() -> str:
    """``docs/configuration.md``: every setting, its variable, type, default and meaning."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from platform/nestpoint/settings.py by",
        "     `nestpoint settings reference --output docs/configuration.md`. Do not edit:",
        "     change the field descriptions and regenerate (a test compares the two). -->",
        "",
        "Nestpoint reads its settings once, from the environment: each setting below is the",
        'variable `NESTPOINT_<NAME>`. Lists are JSON (`["a", "b"]`). The defaults are the',
        "embedded set-up (SQLite, the in-process broker); production sets at least the",
        "database URLs, `NESTPOINT_REDIS_URL` and the personal-data keys.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        if name == "database_url":  # derived from data_dir when the settings are read
            default: object = "sqlite+aiosqlite:///<data_dir>/nestpoint.db"
        else:
            default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        kind = str(field.annotation).replace("typing.", "").replace("<class '", "")
        kind = kind.replace("'>", "").replace(" | None", " (optional)")
        kind = kind.replace("pathlib.Path", "path")
        lines.append(f"| `NESTPOINT_{name.upper()}` | {kind} | {shown} | {field.description} |")
    lines += [
        "",
        "Read outside the settings, by the tools that need them:",
        "",
        "| variable | meaning |",
        "|---|---|",
        "| `NESTPOINT_MIGRATIONS_DIR` | the core's Alembic folder (default: the one "
        "inside the installed package, `nestpoint/migrations`) |",
        "| `NESTPOINT_DEMO_MEMBERS` | members `nestpoint demo` seeds per example chain (1000) |",
        "| `NESTPOINT_TEST_DATABASE` | the tests' backend: `sqlite` (default) or "
        "`postgresql` (README.md) |",
    ]
    return "\n".join(lines) + "\n"
