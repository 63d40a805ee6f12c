"""Methods: named server functions clients call, each in one transaction.

``@live.method("name")`` registers ``f(ctx, session, **params)``. Parameters are
validated from ``f``'s annotations exactly as a publication's are
(:mod:`livesync.params`). ``f`` runs in a worker thread, in a transaction livesync opens
on ``session`` and commits after ``f`` returns (rolls back if it raises), so its writes
are captured and published like any other; ``f`` must not commit or roll back itself.
Its return value, which must be JSON-serialisable, is sent back in the ``ack``.

Raise :class:`~livesync.errors.Invalid`, :class:`~livesync.errors.Conflict`,
:class:`~livesync.errors.NotFound` or :class:`~livesync.publications.Forbidden` to refuse
the call with that code; any other exception answers ``internal`` (logged with the request
id, never sent).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from sqlalchemy.orm import Session

from .params import params_model, validate_params
from .publications import Context

MethodFunction = Callable[..., Any]


class Method:
    """One registered method; :meth:`call` validates the params and runs it."""

    def __init__(self, name: str, function: MethodFunction) -> None:
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"method {name!r} is async; methods are plain functions (they run in a worker "
                "thread, inside the transaction livesync commits)"
            )
        self.name = name
        self.function = function
        self._params = params_model("method", name, function, ("ctx", "session"))

    def call(self, ctx: Context, session: Session, params: Mapping[str, Any]) -> Any:
        """Validate ``params`` (pydantic ValidationError if they do not fit), call the
        function, and return its result in JSON form (TypeError if it has none)."""
        values = validate_params(self._params, params)
        result = self.function(ctx, session, **values)
        try:
            return orjson.loads(orjson.dumps(result))
        except TypeError as exc:
            raise TypeError(
                f"method {self.name!r} returned a value JSON cannot hold: {exc}"
            ) from None
