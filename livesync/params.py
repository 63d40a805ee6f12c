"""Parameters validated from a function's annotations: shared by publications and methods.

A publication ``f(ctx, **params)`` and a method ``f(ctx, session, **params)`` both declare
their client-supplied parameters as annotated keyword parameters. :func:`params_model`
turns those into a pydantic model once, at registration, so a function with a parameter
that cannot be validated (no annotation, ``*args``, ``**kwargs``) fails at startup, and
client input is checked before the function runs.
"""

from __future__ import annotations

import inspect as pyinspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .patches import escape_pointer


def params_model(
    kind: str, name: str, function: Callable[..., Any], leading: tuple[str, ...]
) -> type[BaseModel]:
    """A pydantic model of ``function``'s parameters after the ``leading`` positional ones.

    ``leading`` names what the server passes first (``("ctx",)`` for publications,
    ``("ctx", "session")`` for methods), only for error messages. Unknown parameters are
    refused (``extra="forbid"``); values are coerced in pydantic's lax mode (``"3"`` -> 3),
    since they come from JSON.
    """
    signature = pyinspect.signature(function, eval_str=True)  # resolve string annotations
    params = list(signature.parameters.values())
    positional = (pyinspect.Parameter.POSITIONAL_ONLY, pyinspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) < len(leading) or any(p.kind not in positional for p in params[: len(leading)]):
        first = "first parameters" if len(leading) > 1 else "first parameter"
        raise TypeError(f"{kind} {name!r} must take {', '.join(leading)} as its {first}")
    fields: dict[str, Any] = {}
    for param in params[len(leading) :]:
        if param.kind in (pyinspect.Parameter.VAR_KEYWORD, pyinspect.Parameter.VAR_POSITIONAL):
            raise TypeError(f"{kind} {name!r}: *args/**kwargs cannot be validated")
        if param.annotation is pyinspect.Parameter.empty:
            raise TypeError(f"{kind} {name!r}: parameter {param.name!r} needs a type")
        default = ... if param.default is pyinspect.Parameter.empty else param.default
        fields[param.name] = (param.annotation, default)
    model: type[BaseModel] = create_model(
        f"{name}_params",
        __config__=ConfigDict(extra="forbid", strict=False),
        **fields,
    )
    return model


def validate_params(model: type[BaseModel], params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated parameters as keyword arguments; raises pydantic's ValidationError."""
    return dict(model.model_validate(dict(params)))


def error_locations(exc: ValidationError, limit: int = 10) -> list[tuple[tuple[Any, ...], str]]:
    """``(loc, message)`` of the first ``limit`` errors of a ValidationError."""
    return [(tuple(error["loc"]), error["msg"]) for error in exc.errors()[:limit]]


def dotted(loc: tuple[Any, ...], root: str = "params") -> str:
    """``("a", 0, "b")`` -> ``"a.0.b"`` (``root`` for an error about the whole value)."""
    return ".".join(str(part) for part in loc) or root


def pointer(loc: tuple[Any, ...]) -> str:
    """``("a", 0, "b")`` -> the JSON Pointer ``"/a/0/b"`` (RFC 6901; ``""`` is the root)."""
    return "".join("/" + escape_pointer(str(part)) for part in loc)
