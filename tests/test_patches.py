"""The JSON diff, checked against jsonpatch (the RFC 6902 reference) on random documents."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from livesync.patches import diff, same

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-2, 2), st.text(max_size=3)
)
keys = st.sampled_from(["a", "b", "c/d", "~e", "", "0"])
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500)
@given(old=json_values, new=json_values)
def test_applying_the_diff_gives_the_new_value(old: Any, new: Any) -> None:
    original = copy.deepcopy(old)
    patch = diff(old, new)
    result = jsonpatch.apply_patch(old, patch)
    assert same(result, new)
    assert same(old, original)  # diff never mutates its input


@settings(max_examples=300)
@given(doc=st.dictionaries(keys, json_values, max_size=4), key=keys, value=json_values)
def test_one_nested_change_is_one_small_patch(doc: dict[str, Any], key: str, value: Any) -> None:
    new = {**doc, key: value}
    patch = diff({"data": doc}, {"data": new})
    assert same(jsonpatch.apply_patch({"data": doc}, patch), {"data": new})
    if key in doc and not same(doc[key], value):
        assert all(
            op["path"].startswith(f"/data/{key.replace('~', '~0').replace('/', '~1')}")
            for op in patch
        )


def test_typical_patches_are_minimal() -> None:
    assert diff({"n": 1}, {"n": 2}) == [{"op": "replace", "path": "/n", "value": 2}]
    assert diff([1, 2], [1, 2, 3]) == [{"op": "add", "path": "/2", "value": 3}]
    assert diff([1, 2, 3], [1]) == [
        {"op": "remove", "path": "/2"},
        {"op": "remove", "path": "/1"},
    ]
    assert diff({"a/b": {"x": 1}}, {"a/b": {"x": 1, "y": 2}}) == [
        {"op": "add", "path": "/a~1b/y", "value": 2}
    ]
    assert diff(1, True) == [{"op": "replace", "path": "", "value": True}]
    assert diff(1, 1.0) == [{"op": "replace", "path": "", "value": 1.0}]
    assert diff({"k": [1]}, {"k": [1]}) == []
