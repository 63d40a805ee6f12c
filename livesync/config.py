"""Settings: constructor arguments first, then ``LIVESYNC_*`` environment variables, then defaults.

Every knob a deployment may need to turn lives here, so the README and the CLI can point
to one table. Limits are deliberately finite: "bounded everything" is a design guarantee.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """livesync's configuration; each field maps to ``LIVESYNC_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LIVESYNC_", extra="forbid")

    database_url: str = "sqlite:///livesync.db"
    """Where the application's data (and livesync's outbox) lives."""

    broker_url: str = "memory://"
    """``memory://`` (one process) or ``redis://host:port/db`` (any number of processes)."""

    topic: str = "changes"
    """Broker topic that carries every change set of this database, in publish order."""

    history: int = Field(10_000, ge=1)
    """Change sets the broker keeps for resume; older ones force a fresh snapshot."""

    outbox: bool = True
    """Write each change set to the outbox table in the same transaction (crash safety)."""

    outbox_grace: float = Field(5.0, gt=0)
    """Seconds an outbox row may wait for its writer to publish before the relay takes it."""

    outbox_cleanup_interval: float = Field(0.5, gt=0)
    """Seconds between batched deletions of outbox rows a writer already published."""

    relay_interval: float = Field(0.5, gt=0)
    """Seconds between relay scans of the outbox."""

    relay_batch: int = Field(500, ge=1)
    """Outbox rows the relay claims, publishes and deletes per transaction."""

    publish_mode: Literal["auto", "inline", "background"] = "auto"
    """After COMMIT: publish in the committing thread (``inline``) or hand the change set to
    a publisher thread that pipelines batches (``background``). ``auto`` is inline for
    ``memory://`` and background otherwise."""

    secret: str | None = None
    """Signs websocket tokens (``live.tokens``); comma-separate old secrets to rotate."""

    token_max_age: int = Field(3600, ge=1)
    """Seconds a token issued by ``live.tokens`` stays valid."""

    origins: list[str] = Field(default_factory=list)
    """Origins allowed to open the websocket; empty means the request's own host only."""

    websocket_path: str = "/live"
    """Where ``live.app`` serves the websocket."""

    ping_interval: float = Field(25.0, gt=0)
    """Seconds between server pings."""

    ping_timeout: float = Field(60.0, gt=0)
    """Seconds without any client frame before the connection is closed (4002)."""

    run_relay: bool = True
    """Run an outbox relay inside each gateway process."""

    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    max_subscriptions: int = Field(100, ge=1)
    max_queue_bytes: int = Field(1024 * 1024, ge=1024)
    snapshot_chunk: int = Field(500, ge=1)
    rate_per_second: float = Field(50.0, gt=0)
    rate_burst: int = Field(100, ge=1)

    write_rate_per_second: float = Field(20.0, gt=0)
    """Client writes and method calls per second per connection (beyond: ``rate-limited``)."""

    write_rate_burst: int = Field(40, ge=1)
    """Writes a connection may send at once; also the most it may have waiting to run."""

    push_history: int = Field(1000, ge=1)
    """Messages of ``live.send`` Redis keeps for gateways that fall behind (a gateway more
    than that behind skips ahead: pushes are at most once)."""

    max_channels: int = Field(100, ge=1)
    """Named channels one connection may have joined at once (``join`` beyond: refused)."""

    write_fence_timeout: float = Field(10.0, gt=0)
    """Seconds the gateway waits for a write's change set before sending its fence anyway."""

    writes: Literal["inline", "queue"] = "inline"
    """Where client writes and method calls run: ``inline`` in the gateway process (a
    thread per write), or ``queue``: on a Redis stream, executed by ``livesync worker``
    processes (Redis brokers only; identities must survive a JSON round trip, since they
    travel to the worker as JSON)."""

    write_queue_timeout: float = Field(10.0, gt=0)
    """Queue mode: seconds a write may wait for a worker to take it; then it is withdrawn
    (it never runs) and answered ``internal``. A write a worker took is waited for."""

    worker_concurrency: int = Field(4, ge=1)
    """Queue mode: requests one ``livesync worker`` process runs at once (threads)."""

    worker_claim_idle: float = Field(10.0, gt=0)
    """Queue mode: seconds a taken request may go without its worker's heartbeat before
    another worker claims it (the first one is presumed dead)."""

    worker_max_deliveries: int = Field(5, ge=1)
    """Queue mode: a request delivered this often (every worker running it died) is
    answered ``internal`` and dropped instead of being tried again."""

    request_retention: float = Field(24 * 3600.0, gt=0)
    """Seconds an accepted write's stored ack is kept for idempotent resends."""

    request_cleanup_interval: float = Field(60.0, gt=0)
    """Seconds between deletions of stored acks older than ``request_retention``."""

    bulk_capture_limit: int = Field(100_000, ge=1)
    """Most rows one ORM bulk UPDATE/DELETE may touch; larger ones raise CaptureError."""


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``None`` overrides are ignored so environment values still apply."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)
