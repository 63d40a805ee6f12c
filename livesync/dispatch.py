"""One client write or method call: one transaction, one ``ack``, applied at most once.

:meth:`Dispatcher.execute` is synchronous (the gateway runs it in a worker thread) and
never raises for anything the client did; the result is an :class:`Outcome` holding the
ack's fields. The transaction:

1. looks up the stored answer of ``(client, request)``; found: answer it again, run nothing;
2. applies the write (:mod:`livesync.writes`) or runs the method (:mod:`livesync.methods`);
3. stores the accepted ack (:mod:`livesync.idempotency`) and commits. Capture seals the
   change set with the id the gateway chose, so the gateway can tell when it was fanned
   out (the ``fence``).

Any refusal raised on the way rolls the whole transaction back: the table, the outbox
and the broker see nothing. Before answering a refusal the stored answers are read once
more, because the refusal may come from a concurrent attempt of the same request that
committed first (its row lock or primary key made this one wait, then fail).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import writes
from .capture import CHANGESET_ID_KEY
from .errors import Conflict, NotFound, WriteError
from .idempotency import RequestLog
from .methods import Method
from .params import error_locations, pointer
from .protocol import Call, ErrorCode, Insert, Remove, Update, Write
from .publications import Context, Forbidden, SubscriptionError

log = logging.getLogger("livesync.writes")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request.

    ``ack`` holds the ack message's fields (without ``type``). ``changed`` says that the
    write committed a change set carrying the id passed to :meth:`Dispatcher.execute`;
    ``replayed`` that the ack is the stored answer of an earlier attempt.
    """

    ack: dict[str, Any]
    changed: bool = False
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.ack.get("ok"))


def refusal(request: str, exc: BaseException) -> dict[str, Any] | None:
    """The rejected ack for an exception with a stable code, or None (then: ``internal``)."""
    if isinstance(exc, WriteError):
        ack = _rejected(request, exc.code, str(exc), exc.fields)
        if isinstance(exc, Conflict) and exc.version is not None:
            ack["v"] = exc.version
        return ack
    if isinstance(exc, SubscriptionError) and exc.code is ErrorCode.FORBIDDEN:
        return _rejected(request, ErrorCode.FORBIDDEN, str(exc))
    if isinstance(exc, ValidationError):
        located = error_locations(exc, limit=20)
        fields = [{"path": pointer(loc), "message": message} for loc, message in located]
        summary = "; ".join(f"{f['path'] or '/'}: {f['message']}" for f in fields[:3])
        return _rejected(request, ErrorCode.INVALID, summary, fields)
    return None


def internal(request: str) -> dict[str, Any]:
    """The ack for a server fault: no details (they are logged)."""
    return _rejected(request, ErrorCode.INTERNAL, "internal error")


def _rejected(
    request: str, code: ErrorCode, message: str, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    ack: dict[str, Any] = {"id": request, "ok": False, "code": code.value, "message": message}
    if fields:
        ack["fields"] = fields
    return ack


class _Duplicate(Exception):
    """A concurrent attempt of the same request stored its answer first."""


def _refuse_commit(self: Session, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError(
        "a method must not commit or roll back its session: livesync commits the "
        "transaction after the method returns, and rolls it back if the method raises"
    )


class Dispatcher:
    """Runs client requests against one LiveSync's database (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        session_class: type[Session],
        rules: Callable[[str], writes.WriteRules | None],
        methods: Mapping[str, Method],
        requests: RequestLog,
    ) -> None:
        self._engine = engine
        # A subclass of the instrumented Session (capture applies), whose commit() and
        # rollback() refuse: the transaction is livesync's, opened with session.begin().
        write_session = type(
            "LiveWriteSession",
            (session_class,),
            {"commit": _refuse_commit, "rollback": _refuse_commit},
        )
        self._sessions: sessionmaker[Session] = sessionmaker(engine, class_=write_session)
        self._rules = rules
        self._methods = methods
        self._requests = requests

    def execute(
        self, ctx: Context, client: str, message: Write, changeset_id: str | None = None
    ) -> Outcome:
        """Answer ``message`` from client scope ``client`` (see the module docstring).

        ``changeset_id`` (32 hex digits) becomes the id of the change set the write
        commits, if any. Never raises for an Exception: a refusal becomes its rejected ack,
        anything else (a bug, the database failing) ``internal``, logged with the request
        id. An ``internal`` answer may follow a COMMIT whose outcome is unknown (the
        connection broke during it): the client resends, and the stored ack tells.
        """
        changeset_id = changeset_id or uuid.uuid4().hex
        try:
            return self._run(ctx, client, message, changeset_id)
        except _Duplicate:
            ack = None
        except Exception as exc:
            ack = refusal(message.id, exc)
            if ack is None:
                log.exception(
                    "%s %r failed (request %s, session %s, client %s)",
                    message.type,
                    getattr(message, "c", None) or getattr(message, "m", None),
                    message.id,
                    ctx.session,
                    client,
                )
                ack = internal(message.id)
        try:
            stored = self._stored(client, message.id)
        except Exception:  # the database failed again; the failure is already logged
            log.warning("could not look up the stored answer of request %s", message.id)
            stored = None
        if stored is not None:
            return Outcome(stored, replayed=True)
        if ack is None:  # lost the race on the primary key, yet no row: cannot happen
            log.error(
                "request %s of client %s: duplicate without a stored answer", message.id, client
            )
            ack = internal(message.id)
        return Outcome(ack)

    def _run(self, ctx: Context, client: str, message: Write, changeset_id: str) -> Outcome:
        with self._sessions() as session:
            with session.begin():
                stored = self._requests.find(session.connection(), client, message.id)
                if stored is not None:
                    return Outcome(stored, replayed=True)
                session.info[CHANGESET_ID_KEY] = changeset_id
                ack = self._apply(ctx, session, message)
                session.flush()
                try:
                    self._requests.record(session.connection(), client, message.id, ack)
                except IntegrityError:
                    raise _Duplicate from None
            changed = CHANGESET_ID_KEY not in session.info  # capture took it: sealed
        return Outcome(ack, changed=changed)

    def _apply(self, ctx: Context, session: Session, message: Write) -> dict[str, Any]:
        ack: dict[str, Any] = {"id": message.id, "ok": True}
        if isinstance(message, Call):
            method = self._methods.get(message.m)
            if method is None:
                raise NotFound(f"no method {message.m!r}")
            result = method.call(ctx, session, message.params)
            if result is not None:
                ack["result"] = result
            return ack
        rules = self._rules(message.c)
        if rules is None:  # unknown, or not writable: the same answer, to reveal nothing
            raise Forbidden(f"{message.c} accepts no client writes")
        if isinstance(message, Insert):
            applied = writes.insert(session, ctx, rules, message.d)
        elif isinstance(message, Update):
            patch = None if message.patch is None else [op.to_json() for op in message.patch]
            applied = writes.update(
                session, ctx, rules, message.doc, message.v, patch=patch, fields=message.set_
            )
        else:
            assert isinstance(message, Remove)
            applied = writes.remove(session, ctx, rules, message.doc, message.v)
        ack["doc"] = applied.doc
        if applied.version is not None:
            ack["v"] = applied.version
        return ack

    def _stored(self, client: str, request: str) -> dict[str, Any] | None:
        with self._engine.connect().execution_options(livesync_readonly=True) as conn:
            return self._requests.find(conn, client, request)
