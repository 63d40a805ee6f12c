"""Server push: ``live.send(to, event, data)`` from any process, to connections of any gateway.

Targets (build them with these functions, all exported by ``livesync``):

* :func:`to_session` ``(session_id)``: one connection, the ``session`` of its ``welcome``
  (``ctx.session`` in publications, rules and methods);
* :func:`to_user` ``(user)``: every connection whose identity's **user key** equals
  ``user``. The user key is the identity itself unless the application registers
  ``@live.user_key`` (for example ``lambda identity: identity["id"]``). Keys compare as
  JSON (so ``7`` and ``7.0`` are the same user, ``"7"`` another one); anonymous
  connections (identity ``None``) and a key of ``None`` are nobody's;
* :func:`to_channel` ``(name)``: every connection that joined the named channel (``join``
  on the wire, allowed by a ``@live.channel`` rule; see :class:`ChannelRules`).

:meth:`LiveSync.send` publishes one entry on the broker topic ``<topic>:send`` (Redis, or
``memory://`` within one process). Every gateway follows that topic from where it was
when the gateway started and writes the ``msg`` frame to its matching connections.
Delivery is **at most once**: a connection gets a message only if it is connected (and,
for a channel, joined) when its gateway reads it; nothing is stored for later, or
replayed after a reconnect. Messages from one sender arrive in the order they were sent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .protocol import encode
from .publications import Context

Kind = Literal["session", "user", "channel"]
ChannelRule = Callable[[Context, str], Any]
"""``f(ctx, name)``: truthy to allow a join (or an awaitable of it)."""

MAX_NAME = 128  # channel and event names, as the wire allows


@dataclass(frozen=True, slots=True)
class Target:
    """Where a pushed message goes; make one with :func:`to_session`, :func:`to_user` or
    :func:`to_channel`."""

    kind: Kind
    key: Any


def _name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise ValueError(f"{what} must be a string of 1-{MAX_NAME} characters, got {value!r}")
    return value


def to_session(session: str) -> Target:
    """One connection: its ``welcome.session`` (``ctx.session`` on the server)."""
    return Target("session", _name("a session id", session))


def to_user(user: Any) -> Target:
    """Every connection of one user: those whose identity's user key (``@live.user_key``;
    by default the identity) equals ``user`` as JSON."""
    user_key(user)  # must be JSON
    return Target("user", user)


def to_channel(name: str) -> Target:
    """Every connection that joined the channel ``name``."""
    return Target("channel", _name("a channel name", name))


def user_key(user: Any) -> bytes:
    """The comparable form of a user key: canonical JSON. Raises :exc:`TypeError` if it is
    not JSON-serialisable."""
    return orjson.dumps(user, option=orjson.OPT_SORT_KEYS)


def encode_push(target: Target, event: str, data: Any, max_bytes: int) -> bytes:
    """The broker payload: a JSON header line naming the target, then the ``msg`` frame,
    encoded once here so that gateways forward its bytes as they are.

    Raises :exc:`ValueError` for a bad event name or a frame above ``max_bytes``, and
    :exc:`TypeError` if ``data`` is not JSON-serialisable.
    """
    _name("an event name", event)
    channel = target.key if target.kind == "channel" else None
    frame = encode("msg", ev=event, data=data, ch=channel).data
    if len(frame) > max_bytes:
        raise ValueError(f"a pushed message of {len(frame)} bytes exceeds {max_bytes}")
    # orjson never writes a raw newline (it escapes them in strings): a safe separator.
    return orjson.dumps({"k": target.kind, "v": target.key}) + b"\n" + frame


def decode_push(payload: bytes) -> tuple[Kind, Any, bytes]:
    """``(kind, key, frame)`` of :func:`encode_push`'s payload; raises ``ValueError``."""
    header, separator, frame = payload.partition(b"\n")
    if not separator:
        raise ValueError("not a push payload")
    data = orjson.loads(header)
    kind = data.get("k")
    if kind not in ("session", "user", "channel"):
        raise ValueError(f"unknown push target {kind!r}")
    found: Kind = kind
    return found, data.get("v"), frame


class ChannelRules:
    """Who may join which named channel: ``@live.channel(pattern)`` rules. Default deny.

    A pattern is a channel name or a shell-style glob (``"room:*"``, ``fnmatch`` rules,
    case-sensitive). For a ``join``, the **first** registered pattern that matches the
    name decides: its rule ``f(ctx, name)`` (sync or async; a sync one runs in a thread,
    so it may query the database) allows the join by returning something truthy, and
    refuses it with ``forbidden`` by returning something falsy or raising
    :class:`~livesync.publications.Forbidden` (whose message the client gets). A name no
    pattern matches is ``not-found``.
    """

    def __init__(self) -> None:
        self._rules: list[tuple[str, ChannelRule]] = []

    def add(self, pattern: str, rule: ChannelRule) -> None:
        _name("a channel pattern", pattern)
        if any(existing == pattern for existing, _ in self._rules):
            raise ValueError(f"a channel rule for {pattern!r} is already registered")
        self._rules.append((pattern, rule))

    def rule_for(self, name: str) -> ChannelRule | None:
        """The rule deciding joins of ``name``, or None (nobody may join it)."""
        for pattern, rule in self._rules:
            if fnmatch.fnmatchcase(name, pattern):
                return rule
        return None

    def __bool__(self) -> bool:
        return bool(self._rules)
