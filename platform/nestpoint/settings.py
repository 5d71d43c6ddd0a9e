"""Typed settings, read once from the environment (``NESTPOINT_*``).

The defaults are the embedded set-up: a SQLite file under ``var/`` and an in-process
Dramatiq broker, so a newcomer runs everything with no server. Production points
``NESTPOINT_DATABASE_URL`` at PostgreSQL (asyncpg) and ``NESTPOINT_REDIS_URL`` at Redis.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NESTPOINT_", extra="ignore")

    # The application's connection: on PostgreSQL a role that owns no table (RLS applies).
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'nestpoint.db'}",
        description="SQLAlchemy URL the API and workers use.",
    )
    # Migrations run as the owner of the tables; defaults to the application's URL
    # (which is right for SQLite, where there are no roles).
    migration_database_url: str | None = None
    # The role the application connects as; migrations grant it rights and nothing more.
    app_role: str = "nestpoint_app"
    # Per process: about the number of requests a worker serves at once (32 clients over
    # 2 workers in the benchmark); overflow adds half again for bursts.
    database_pool_size: int = 20
    database_echo: bool = False

    # None means the in-process broker (embedded default and tests).
    redis_url: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "INFO"
    log_json: bool = True

    # Operator allow/block lists of plugin ids (empty allow list = all allowed).
    plugins_allow: list[str] = Field(default_factory=list)
    plugins_block: list[str] = Field(default_factory=list)
    # Per-tenant plugin enablement is cached in each process for this long; a change made
    # in this process applies at once, in other processes within this time.
    plugins_cache_ttl_seconds: float = 5.0
    # Time limits for one plugin hook call: event hooks (relay) and the earn-rule hook
    # (on the order path). A call over its limit is a failure of that plugin.
    plugins_event_timeout_seconds: float = 10.0
    plugins_earn_timeout_seconds: float = 1.0
    # After this many failed deliveries a plugin stops receiving that event (recorded as final).
    plugins_max_delivery_attempts: int = 15

    # Outbox relay: how many events one relay pass takes, and the retry back-off cap.
    outbox_batch_size: int = 200
    outbox_max_backoff_seconds: int = 3600

    # Personal data at rest. ``pii_keys``: comma-separated ``<key id>:<base64 32-byte key>``,
    # the first encrypts, all decrypt (rotation: put the new key first, run
    # ``nestpoint members rotate-keys``). ``pii_hash_key``: base64 key of the keyed hash used
    # for exact lookup by phone. Every process sharing a database needs the same values:
    # outside the embedded SQLite default a process without them refuses to start
    # (``nestpoint members new-key`` makes them); on SQLite, both unset, a key file under
    # var/ is used.
    pii_keys: str | None = None
    pii_hash_key: str | None = None

    # Signs pagination cursors (HMAC-SHA256), so a cursor works only on the listing that
    # issued it. Unset: a key derived from ``pii_hash_key``, which every process of a
    # database already shares (set this one only to rotate cursor signing on its own).
    cursor_key: str | None = None

    # Loyalty configuration and API keys are cached per process this long (seconds): a
    # change made through another process applies within this time.
    config_cache_seconds: float = 5.0

    # Set-based jobs over members (points expiry, tier evaluation) work through a tenant's
    # members this many at a time, one transaction each (members/jobs.py): an order waits
    # on a job's row locks for one chunk at most, never for the whole run.
    job_chunk_members: int = Field(default=10_000, ge=1)
    # After each chunk a job pauses for this share of the time the chunk took (1.0: a job
    # works at most half of its run), leaving the tills their share of a small machine while
    # a long job runs; the run takes that much longer. 0: no pause (a maintenance window).
    job_chunk_pause_ratio: float = Field(default=1.0, ge=0.0)

    @property
    def owner_database_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


@lru_cache
def get_settings() -> Settings:
    return Settings()
