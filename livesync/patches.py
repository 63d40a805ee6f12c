"""RFC 6902 diffs of JSON values: small patches, made fast.

``jsonpatch.make_patch`` is general but costs about 100 µs for a small document, which
showed up as the largest single cost of capturing updates. Documents change in a few
typical ways (a scalar replaced, a key added or removed in a JSON column, an item appended
to a list), and this diff covers those with minimal patches and falls back to a whole-value
``replace`` otherwise. Correctness is tested against jsonpatch's ``apply_patch``
(``tests/test_patches.py``), which is the RFC 6902 reference here.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def escape_pointer(key: str) -> str:
    """One JSON Pointer reference token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


def same(a: Any, b: Any) -> bool:
    """JSON equality: unlike ``==``, ``True`` is not ``1`` and ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def diff(old: Any, new: Any, path: str = "") -> list[Op]:
    """Ops that turn ``old`` into ``new`` when applied at ``path`` (``""`` is the root)."""
    ops: list[Op] = []
    _diff(old, new, path, ops)
    return ops


def _diff(old: Any, new: Any, path: str, ops: list[Op]) -> None:
    if same(old, new):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape_pointer(key)}"})
        for key, value in new.items():
            child = f"{path}/{escape_pointer(key)}"
            if key in old:
                _diff(old[key], value, child, ops)
            else:
                ops.append({"op": "add", "path": child, "value": value})
        return
    if isinstance(old, list) and isinstance(new, list):
        n_old, n_new = len(old), len(new)
        if n_old < n_new and same(old, new[:n_old]):
            ops.extend(
                {"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in range(n_old, n_new)
            )
            return
        if n_new < n_old and same(old[:n_new], new):
            ops.extend(
                {"op": "remove", "path": f"{path}/{i}"} for i in range(n_old - 1, n_new - 1, -1)
            )
            return
        if n_old == n_new:
            for i in range(n_old):
                _diff(old[i], new[i], f"{path}/{i}", ops)
            return
    ops.append({"op": "replace", "path": path, "value": new})
