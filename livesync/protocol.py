"""The livesync wire protocol, version 1, without any I/O.

This module turns client frames into events and server facts into frames. It never touches
a socket, a task or a broker (a test checks it imports no asyncio, sanic or redis), so the
whole protocol is testable in memory, in the spirit of h11 and python-websockets. The
gateway feeds it what arrives, and writes what it returns.

``docs/protocol.md`` is the specification; the tables below (:data:`MESSAGES`,
:class:`CloseCode`, :class:`ErrorCode`) are its single source in code, exported for the
JavaScript client by :func:`wire_table`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

VERSION = 1
SUPPORTED_VERSIONS = (1,)


class CloseCode(enum.IntEnum):
    """WebSocket close codes. 4000-4499: reconnect and resume. 4500-4999: do not retry."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down or restarting: reconnect and resume
    MESSAGE_TOO_BIG = 1009  # a frame above max_frame_bytes: reconnect, drop that message
    SERVER_RESTART = 4000
    SLOW_CONSUMER = 4001  # outbound queue above max_queue_bytes
    PING_TIMEOUT = 4002
    BROKER_LOST = 4003
    PROTOCOL_VIOLATION = 4500
    UNSUPPORTED_VERSION = 4501
    UNAUTHORIZED = 4503
    FORBIDDEN_ORIGIN = 4504
    TOKEN_EXPIRED = 4505  # get a fresh token, then connect again

    @property
    def reconnect(self) -> bool:
        """Whether a client should reconnect (with backoff) and resume after this code."""
        return self in (CloseCode.GOING_AWAY, CloseCode.MESSAGE_TOO_BIG) or 4000 <= self < 4500


class ErrorCode(enum.StrEnum):
    """Stable ``code`` values of ``error``, ``nosub`` and rejected ``ack`` messages."""

    MALFORMED = "malformed"  # not JSON, or not a JSON object
    UNKNOWN_TYPE = "unknown-type"
    INVALID_MESSAGE = "invalid-message"  # missing or wrongly typed fields
    UNEXPECTED_MESSAGE = "unexpected-message"  # valid, but not in this state
    UNKNOWN_PUBLICATION = "unknown-publication"
    BAD_PARAMS = "bad-params"
    FORBIDDEN = "forbidden"
    DUPLICATE_SUBSCRIPTION = "duplicate-subscription"
    TOO_MANY_SUBSCRIPTIONS = "too-many-subscriptions"
    RATE_LIMITED = "rate-limited"
    INTERNAL = "internal"
    INVALID = "invalid"  # a write or call failed validation (``fields`` says where)
    CONFLICT = "conflict"  # stale base version, or the document already exists
    NOT_FOUND = "not-found"  # no such document, or no such method


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One row of the message table: who sends it and which fields it carries."""

    direction: Literal["client", "server", "both"]
    fields: tuple[str, ...]
    summary: str


MESSAGES: dict[str, MessageSpec] = {
    "hello": MessageSpec(
        "client", ("v", "token", "client"), "first frame: versions, credentials, client id"
    ),
    "welcome": MessageSpec(
        "server", ("v", "session", "epoch", "ping_ms", "limits"), "handshake accepted"
    ),
    "sub": MessageSpec("client", ("id", "pub", "params", "since"), "subscribe"),
    "snap": MessageSpec("server", ("sub", "docs", "more"), "one chunk of a snapshot"),
    "ready": MessageSpec(
        "server", ("sub", "key", "epoch", "pos", "resumed", "order"), "subscription is live"
    ),
    "nosub": MessageSpec("server", ("sub", "code", "message"), "subscription refused or ended"),
    "unsub": MessageSpec("client", ("id",), "unsubscribe"),
    "unsubbed": MessageSpec("server", ("sub",), "unsubscribe done (always answered)"),
    "tx": MessageSpec("server", ("pos", "parts"), "one committed transaction, all parts"),
    "reset": MessageSpec("server", ("key", "reason"), "drop and re-subscribe this key"),
    "ping": MessageSpec("both", ("id",), "liveness probe"),
    "pong": MessageSpec("both", ("id",), "answer to ping"),
    "error": MessageSpec("server", ("code", "message", "ref"), "a frame was refused"),
    "insert": MessageSpec("client", ("id", "c", "d"), "write: insert a document"),
    "update": MessageSpec(
        "client", ("id", "c", "doc", "v", "patch", "set"), "write: patch or set fields"
    ),
    "remove": MessageSpec("client", ("id", "c", "doc", "v"), "write: delete a document"),
    "call": MessageSpec("client", ("id", "m", "params"), "write: call a method"),
    "ack": MessageSpec(
        "server",
        ("id", "ok", "doc", "v", "result", "code", "message", "fields"),
        "a write was accepted (ok) or rejected (code)",
    ),
    "fence": MessageSpec("server", ("id",), "every change of an accepted write was sent"),
    "join": MessageSpec("client", ("id", "ch"), "join a named channel (answered by ack)"),
    "leave": MessageSpec("client", ("id", "ch"), "leave a named channel (answered by ack)"),
    "msg": MessageSpec("server", ("ev", "data", "ch"), "a message the application pushed"),
}

CLIENT_TYPES = frozenset(t for t, s in MESSAGES.items() if s.direction in ("client", "both"))
WRITE_TYPES = frozenset({"insert", "update", "remove", "call"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection bounds, announced in ``welcome`` so clients can respect them."""

    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 100
    max_queue_bytes: int = 1024 * 1024
    snapshot_chunk: int = 500
    rate_per_second: float = 50.0
    rate_burst: int = 100
    write_rate_per_second: float = 20.0
    write_rate_burst: int = 40
    max_channels: int = 100

    def announce(self) -> dict[str, Any]:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_subscriptions": self.max_subscriptions,
            "max_queue_bytes": self.max_queue_bytes,
            "rate_per_second": self.rate_per_second,
            "rate_burst": self.rate_burst,
            "write_rate_per_second": self.write_rate_per_second,
            "write_rate_burst": self.write_rate_burst,
            "max_channels": self.max_channels,
        }


# --------------------------------------------------------------------------- client messages
class _Message(BaseModel):
    # Unknown fields are ignored, so newer clients can talk to older servers.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Since(_Message):
    epoch: str = Field(max_length=64)
    pos: int = Field(ge=0)


class Hello(_Message):
    type: Literal["hello"]
    v: list[int] = Field(min_length=1, max_length=16)
    token: str | None = Field(None, max_length=8192)
    client: str | None = Field(None, min_length=8, max_length=64)
    """A stable id the client keeps across reconnects: the scope of write idempotency."""


class Sub(_Message):
    type: Literal["sub"]
    id: str = Field(min_length=1, max_length=64)
    pub: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    since: Since | None = None


class Unsub(_Message):
    type: Literal["unsub"]
    id: str = Field(min_length=1, max_length=64)


class Ping(_Message):
    type: Literal["ping"]
    id: str | int | None = None


class Pong(_Message):
    type: Literal["pong"]
    id: str | int | None = None


RequestId = Annotated[str, Field(min_length=1, max_length=64)]
CollectionName = Annotated[str, Field(min_length=1, max_length=128)]
DocumentId = Annotated[str, Field(min_length=1, max_length=512)]


class PatchOp(_Message):
    """One RFC 6902 operation; the members each ``op`` requires are checked here."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(max_length=1024)
    from_: str | None = Field(None, alias="from", max_length=1024)
    value: Any = None

    @model_validator(mode="after")
    def _members(self) -> PatchOp:
        if self.op in ("add", "replace", "test") and "value" not in self.model_fields_set:
            raise ValueError(f"a {self.op!r} operation needs a value")
        if self.op in ("move", "copy") and self.from_ is None:
            raise ValueError(f"a {self.op!r} operation needs from")
        return self

    def to_json(self) -> dict[str, Any]:
        """The operation as RFC 6902 JSON (for jsonpatch)."""
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.from_ is not None:
            out["from"] = self.from_
        if "value" in self.model_fields_set:
            out["value"] = self.value
        return out


class Insert(_Message):
    type: Literal["insert"]
    id: RequestId
    c: CollectionName
    d: dict[str, Any]


class Update(_Message):
    """Exactly one of ``patch`` (RFC 6902 on the current document) or ``set`` (fields)."""

    type: Literal["update"]
    id: RequestId
    c: CollectionName
    doc: DocumentId
    v: int | None = Field(None, ge=0)
    patch: list[PatchOp] | None = Field(None, max_length=1000)
    set_: dict[str, Any] | None = Field(None, alias="set")

    @model_validator(mode="after")
    def _one_change(self) -> Update:
        if (self.patch is None) == (self.set_ is None):
            raise ValueError("give exactly one of patch or set")
        return self


class Remove(_Message):
    type: Literal["remove"]
    id: RequestId
    c: CollectionName
    doc: DocumentId
    v: int | None = Field(None, ge=0)


class Call(_Message):
    type: Literal["call"]
    id: RequestId
    m: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)


ChannelName = Annotated[str, Field(min_length=1, max_length=128)]


class Join(_Message):
    """Join the named channel ``ch``: receive the ``msg`` frames the application sends to it."""

    type: Literal["join"]
    id: RequestId
    ch: ChannelName


class Leave(_Message):
    type: Literal["leave"]
    id: RequestId
    ch: ChannelName


Write = Insert | Update | Remove | Call
ClientMessage = Hello | Sub | Unsub | Ping | Pong | Insert | Update | Remove | Call | Join | Leave
_MODELS: dict[str, type[_Message]] = {
    "hello": Hello,
    "sub": Sub,
    "unsub": Unsub,
    "ping": Ping,
    "pong": Pong,
    "insert": Insert,
    "update": Update,
    "remove": Remove,
    "call": Call,
    "join": Join,
    "leave": Leave,
}
_WRITE_MODELS: dict[str, type[Insert] | type[Update] | type[Remove] | type[Call]] = {
    "insert": Insert,
    "update": Update,
    "remove": Remove,
    "call": Call,
}


def write_to_json(message: Write) -> dict[str, Any]:
    """A write message as JSON again (what the client sent, minus ignored fields).

    :func:`write_from_json` gives back an equal message; queue mode carries writes from
    the gateway to the workers this way.
    """
    return message.model_dump(mode="json", by_alias=True, exclude_unset=True)


def write_from_json(data: dict[str, Any]) -> Write:
    """Parse a write from :func:`write_to_json`'s form; raises ``ValidationError`` or
    ``KeyError`` (unknown ``type``) if it is not one."""
    return _WRITE_MODELS[data["type"]].model_validate(data)


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class Received:
    """A valid client message the gateway must act on."""

    message: ClientMessage


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes the gateway must send on this connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The gateway must close the connection with this code (after sending pending data)."""

    code: CloseCode
    reason: str


Event = Received | Send | Close


class State(enum.Enum):
    AWAITING_HELLO = "awaiting-hello"
    OPEN = "open"
    CLOSED = "closed"


# The state machine as data: which client message types each state accepts, and where a
# valid one leads. Anything else is answered by an error naming the state and what was
# expected (before the handshake it is a protocol violation, and the connection closes).
TRANSITIONS: dict[State, dict[str, State]] = {
    State.AWAITING_HELLO: {"hello": State.OPEN},
    State.OPEN: {
        "sub": State.OPEN,
        "unsub": State.OPEN,
        "ping": State.OPEN,
        "pong": State.OPEN,
        "insert": State.OPEN,
        "update": State.OPEN,
        "remove": State.OPEN,
        "call": State.OPEN,
        "join": State.OPEN,
        "leave": State.OPEN,
    },
    State.CLOSED: {},
}


@dataclass
class TokenBucket:
    """Inbound rate limit: ``rate`` messages per second with bursts of ``burst``."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def slow_consumer(buffered: int, size: int, max_queue_bytes: int) -> Close | None:
    """Check a write of ``size`` bytes against the ``buffered`` bytes still unsent.

    Returns the Close (4001, resumable) for a connection whose backlog would outgrow
    ``max_queue_bytes``. A single write larger than the bound is accepted when nothing is
    buffered (one big transaction), or a client could never get past it: it would
    reconnect, resume, and be cut off again forever.
    """
    if buffered and buffered + size > max_queue_bytes:
        return Close(CloseCode.SLOW_CONSUMER, "outbound queue full; resume from your position")
    return None


@dataclass
class ServerConnection:
    """Protocol state of one websocket connection, fed frames, returning events.

    ``receive`` never raises on bad input: each problem becomes an ``error`` frame with a
    stable code (the connection stays open), except before the handshake, where it closes
    with :attr:`CloseCode.PROTOCOL_VIOLATION`. Subscription bookkeeping here is only what
    the protocol itself checks (ids, counts); the gateway owns the data.

    Writes (``insert``, ``update``, ``remove``, ``call``) count against the inbound rate
    like every message, and against their own bucket too (``write_rate_per_second``,
    ``write_rate_burst``); a write over that bucket is answered here by a rejected ``ack``
    with ``rate-limited`` and never reaches the gateway.
    """

    limits: Limits = field(default_factory=Limits)
    state: State = State.AWAITING_HELLO
    version: int | None = None
    subscriptions: set[str] = field(default_factory=set)
    bucket: TokenBucket | None = None
    write_bucket: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.bucket is None:
            self.bucket = TokenBucket(self.limits.rate_per_second, self.limits.rate_burst)
        if self.write_bucket is None:
            self.write_bucket = TokenBucket(
                self.limits.write_rate_per_second, self.limits.write_rate_burst
            )

    def receive(self, frame: str | bytes, now: float) -> list[Event]:
        """Process one inbound frame (``now`` is a monotonic clock reading, in seconds)."""
        if self.state is State.CLOSED:
            return []
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if size > self.limits.max_frame_bytes:
            return self._close(CloseCode.MESSAGE_TOO_BIG, f"frame of {size} bytes")
        assert self.bucket is not None
        if self.state is State.OPEN and not self.bucket.allow(now):
            return [self._error(ErrorCode.RATE_LIMITED, "too many messages; slow down")]
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return self._refuse(ErrorCode.MALFORMED, "frame is not valid JSON")
        if not isinstance(data, dict):
            return self._refuse(ErrorCode.MALFORMED, "frame is not a JSON object")
        kind = data.get("type")
        ref = _ref(data)
        if kind not in CLIENT_TYPES:
            return self._refuse(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", ref)
        allowed = TRANSITIONS[self.state]
        if kind not in allowed:
            expected = " or ".join(sorted(allowed)) or "nothing"
            return self._refuse(
                ErrorCode.UNEXPECTED_MESSAGE,
                f"{kind!r} in state {self.state.value}; expected {expected}",
                ref,
            )
        try:
            message: Any = _MODELS[kind].model_validate(data)
        except ValidationError as exc:
            return self._refuse(ErrorCode.INVALID_MESSAGE, _describe(exc), ref)
        if kind in WRITE_TYPES:
            assert self.write_bucket is not None
            if not self.write_bucket.allow(now):
                return [rejected(message.id, ErrorCode.RATE_LIMITED, "too many writes; slow down")]
        return self._accept(message, allowed[kind])

    def _accept(self, message: ClientMessage, next_state: State) -> list[Event]:
        if isinstance(message, Hello):
            common = [v for v in message.v if v in SUPPORTED_VERSIONS]
            if not common:
                supported = ", ".join(map(str, SUPPORTED_VERSIONS))
                return self._close(CloseCode.UNSUPPORTED_VERSION, f"server speaks {supported}")
            self.version = max(common)
        elif isinstance(message, Sub):
            if message.id in self.subscriptions:
                return [
                    self._error(
                        ErrorCode.DUPLICATE_SUBSCRIPTION,
                        f"subscription id {message.id!r} is already in use",
                        message.id,
                    )
                ]
            if len(self.subscriptions) >= self.limits.max_subscriptions:
                return [
                    encode(
                        "nosub",
                        sub=message.id,
                        code=ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                        message=f"at most {self.limits.max_subscriptions} subscriptions",
                    )
                ]
            self.subscriptions.add(message.id)
        elif isinstance(message, Unsub):
            self.subscriptions.discard(message.id)
        elif isinstance(message, Ping):
            self.state = next_state
            return [Received(message), encode("pong", id=message.id)]
        self.state = next_state
        return [Received(message)]

    def ended(self, sub_id: str) -> None:
        """Forget a subscription the gateway ended (``nosub``) so its id can be reused."""
        self.subscriptions.discard(sub_id)

    # ------------------------------------------------------------------ helpers
    def _refuse(self, code: ErrorCode, message: str, ref: str | None = None) -> list[Event]:
        if self.state is State.AWAITING_HELLO:
            return [
                self._error(code, message, ref),
                *self._close(CloseCode.PROTOCOL_VIOLATION, message),
            ]
        return [self._error(code, message, ref)]

    def _error(self, code: ErrorCode, message: str, ref: str | None = None) -> Send:
        return encode("error", code=code, message=message, ref=ref)

    def _close(self, code: CloseCode, reason: str) -> list[Event]:
        self.state = State.CLOSED
        return [Close(code, reason[:120])]


def _ref(data: dict[str, Any]) -> str | None:
    """The offending message's id, if it had a usable one, so the client can match errors."""
    ref = data.get("id")
    return ref if isinstance(ref, str) and len(ref) <= 64 else None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- server messages
def encode(kind: str, **fields: Any) -> Send:
    """One server frame; ``None`` fields are left out. Encoded once, sent to many."""
    payload = {"type": kind, **{k: v for k, v in fields.items() if v is not None}}
    return Send(orjson.dumps(payload))


def rejected(
    request: str,
    code: ErrorCode,
    message: str,
    fields: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Send:
    """A rejected ``ack``: the request ``request`` was refused with ``code``."""
    return encode("ack", id=request, ok=False, code=code, message=message, fields=fields, **extra)


def wire_table() -> dict[str, Any]:
    """Message types, close codes and error codes, for the JavaScript client and the docs."""
    return {
        "version": VERSION,
        "messages": {
            name: {"direction": spec.direction, "fields": list(spec.fields)}
            for name, spec in MESSAGES.items()
        },
        "close_codes": {
            code.name: {"code": int(code), "reconnect": code.reconnect} for code in CloseCode
        },
        "error_codes": {code.name: code.value for code in ErrorCode},
    }


if __name__ == "__main__":  # python -m livesync.protocol > table.json
    print(orjson.dumps(wire_table(), option=orjson.OPT_INDENT_2).decode())
