"""Publications: the only way data leaves the server.

A publication is a named function ``f(ctx, **params)`` that returns a SQLAlchemy
``select()`` over one live collection, optionally with ``where``, ``order_by`` and
``limit``. Nothing is readable unless a publication returns it. Parameters are validated
from the function's annotations (pydantic) before the function runs, so client input only
ever reaches SQL as bound parameters of a query the application wrote.

Resolving a subscription gives a :class:`Query`: the collection, the clauses, and a
``key`` shared by every subscription that asks for exactly the same rows, so the gateway
can evaluate and encode each change once per key rather than once per subscriber.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Select
from sqlalchemy.sql import ColumnElement

from .collections import Collection
from .errors import LiveSyncError
from .params import dotted, error_locations, params_model, validate_params
from .protocol import ErrorCode


class SubscriptionError(LiveSyncError):
    """A subscription is refused; ``code`` is the protocol's stable error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Forbidden(SubscriptionError):
    """Raise from a publication, a write rule or a method to refuse the current identity.

    A refused subscription gets ``nosub`` and a refused write a rejected ``ack``, both
    with the code ``forbidden`` and this message.
    """

    def __init__(self, message: str = "not allowed") -> None:
        super().__init__(ErrorCode.FORBIDDEN, message)


@dataclass(frozen=True)
class Context:
    """What a publication knows about the subscriber."""

    identity: Any
    session: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """A resolved subscription: which rows of which collection, in which order."""

    collection: Collection
    statement: Select[Any]
    where: ColumnElement[bool] | None
    order_by: tuple[ColumnElement[Any], ...]
    limit: int | None
    key: str


class Publication:
    """One registered publication; :meth:`resolve` validates params and builds the query."""

    def __init__(
        self, name: str, function: Callable[..., Any], collections: Callable[[Any], Collection]
    ) -> None:
        self.name = name
        self.function = function
        self._collection_of = collections
        self._params = params_model("publication", name, function, ("ctx",))

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validated parameters; raises ``bad-params`` naming each faulty field."""
        try:
            return validate_params(self._params, params)
        except ValidationError as exc:
            details = "; ".join(f"{dotted(loc)}: {msg}" for loc, msg in error_locations(exc))
            raise SubscriptionError(ErrorCode.BAD_PARAMS, details) from None

    def resolve(self, ctx: Context, params: Mapping[str, Any]) -> Query:
        values = self.validate(params)
        statement = self.function(ctx, **values)
        if not isinstance(statement, Select):
            raise TypeError(f"publication {self.name!r} returned {statement!r}, not a select()")
        return analyse(statement, self._collection_of)


def analyse(statement: Select[Any], collection_of: Callable[[Any], Collection]) -> Query:
    """Check that ``statement`` reads whole documents of one live collection, and split it."""
    descriptions = statement.column_descriptions
    entities = {d.get("entity") for d in descriptions}
    if (
        len(entities) != 1
        or None in entities
        or any(d.get("expr") is not d.get("entity") for d in descriptions)
    ):
        raise TypeError("a publication must select whole rows of one model: select(Model)")
    collection = collection_of(entities.pop())
    if statement._offset_clause is not None:
        raise TypeError("publications do not support offset(); use order_by + limit windows")
    if statement._group_by_clauses or statement._having_criteria or statement._distinct:
        raise TypeError("publications do not support group_by, having or distinct")
    limit = statement._limit
    if limit is not None:
        # Windows end their order with the primary key, so ties have one order in the
        # database and in the gateway's copy of the window (livesync.ordering).
        plain = [_plain(c) for c in statement._order_by_clauses]
        ordered = {c.key for c in plain if getattr(c, "table", None) is collection.table}
        missing = [c for c in collection.pk_columns if c.key not in ordered]
        if missing:
            statement = statement.order_by(*missing)
    return Query(
        collection=collection,
        statement=statement,
        where=statement.whereclause,
        order_by=tuple(statement._order_by_clauses),
        limit=None if limit is None else int(limit),
        key=query_key(statement),
    )


def _plain(clause: Any) -> Any:
    """The column under ``desc()``/``asc()``/``nulls_*()`` wrappers (or the clause itself)."""
    while hasattr(clause, "modifier") and hasattr(clause, "element"):
        clause = clause.element
    return clause


def query_key(statement: Select[Any]) -> str:
    """Equal for statements that read the same rows in the same order (SQL + bound values)."""
    compiled = statement.compile()
    material = orjson.dumps([str(compiled), sorted(compiled.params.items())], default=str)
    return hashlib.blake2b(material, digest_size=9).hexdigest()
