"""Publications: validated parameters, one live collection per query, shared keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from sqlalchemy import func, select

from livesync import LiveSync
from livesync.protocol import ErrorCode
from livesync.publications import Context, Forbidden, SubscriptionError
from tests.models import File, Folder, Item


@pytest.fixture
def live(tmp_path: Any) -> Iterator[LiveSync]:
    live = LiveSync(f"sqlite:///{tmp_path / 'p.db'}", f"memory://{uuid.uuid4().hex}")
    live.collection(Item, publish=True)
    live.collection(Folder)
    live.collection(File)

    @live.publication("items_by_title")
    def items_by_title(
        ctx: Context, title: str, min_qty: int = 0, order: Literal["asc", "desc"] = "asc"
    ) -> Any:
        sort = Item.id.asc() if order == "asc" else Item.id.desc()
        return select(Item).where(Item.title == title, Item.qty >= min_qty).order_by(sort).limit(10)

    @live.publication("my_files")
    def my_files(ctx: Context) -> Any:
        if ctx.identity is None:
            raise Forbidden("sign in first")
        return select(File).where(File.folder_id == ctx.identity["folder"])

    yield live
    live.close()


def refused(live: LiveSync, name: str, params: dict[str, Any], identity: Any = None) -> Any:
    with pytest.raises(SubscriptionError) as info:
        live.subscribe_query(name, Context(identity), params)
    return info.value


def test_a_query_is_split_into_its_parts(live: LiveSync) -> None:
    query = live.subscribe_query("items_by_title", Context(None), {"title": "a", "min_qty": "3"})
    assert query.collection.name == "t_items"
    assert query.limit == 10
    assert len(query.order_by) == 1
    assert query.where is not None
    assert query.statement.compile().params["qty_1"] == 3  # coerced from "3", then bound


def test_equal_queries_share_a_key_and_different_ones_do_not(live: LiveSync) -> None:
    def key(identity: Any, **params: Any) -> str:
        return live.subscribe_query("items_by_title", Context(identity), params).key

    assert key(None, title="a") == key({"user": 2}, title="a", min_qty=0)
    assert key(None, title="a") != key(None, title="b")
    assert key(None, title="a") != key(None, title="a", order="desc")
    files = live.subscribe_query("my_files", Context({"folder": 1}), {}).key
    assert files != live.subscribe_query("my_files", Context({"folder": 2}), {}).key


def test_the_built_in_publication_reads_the_whole_collection(live: LiveSync) -> None:
    query = live.subscribe_query("t_items", Context(None), {})
    assert (query.where, query.limit, query.order_by) == (None, None, ())


def test_nothing_unpublished_is_readable(live: LiveSync) -> None:
    error = refused(live, "t_folders", {})
    assert error.code == ErrorCode.UNKNOWN_PUBLICATION


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "title: Field required"),
        ({"title": "a", "min_qty": "lots"}, "min_qty"),
        ({"title": "a", "order": "sideways"}, "order"),
        ({"title": "a", "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"title": ["a"]}, "title"),
        ({"title": "a'; DROP TABLE t_items; --", "min_qty": "1 OR 1=1"}, "min_qty"),
    ],
)
def test_bad_params_are_refused_before_any_sql(
    live: LiveSync, params: dict[str, Any], detail: str
) -> None:
    error = refused(live, "items_by_title", params)
    assert error.code == ErrorCode.BAD_PARAMS
    assert detail in str(error)


def test_injection_attempts_stay_bound_parameters(live: LiveSync) -> None:
    hostile = "a'; DROP TABLE t_items; --"
    query = live.subscribe_query("items_by_title", Context(None), {"title": hostile})
    compiled = query.statement.compile()
    assert hostile not in str(compiled)
    assert hostile in compiled.params.values()


def test_publications_can_refuse_an_identity(live: LiveSync) -> None:
    error = refused(live, "my_files", {})
    assert (error.code, str(error)) == (ErrorCode.FORBIDDEN, "sign in first")


def test_registration_errors(live: LiveSync) -> None:
    with pytest.raises(ValueError, match="already registered"):
        live.publication("items_by_title")(lambda ctx: select(Item))
    with pytest.raises(TypeError, match="needs a type"):
        live.publication("untyped")(lambda ctx, x: select(Item))
    with pytest.raises(TypeError, match=r"\*\*kwargs"):

        def loose(ctx: Context, **kw: Any) -> Any:
            return select(Item)

        live.publication("loose")(loose)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (lambda: select(Item.id), "whole rows"),
        (lambda: select(Item, Folder), "whole rows"),
        (lambda: select(Item).offset(5), "offset"),
        (lambda: select(Item).group_by(Item.title), "group_by"),
        (lambda: select(func.count()).select_from(Item), "whole rows"),
        (lambda: "SELECT * FROM t_items", "not a select"),
    ],
)
def test_unsupported_statements_are_programming_errors(
    live: LiveSync, statement: Any, message: str
) -> None:
    name = f"bad_{uuid.uuid4().hex[:6]}"
    live.publication(name)(lambda ctx: statement())
    with pytest.raises(TypeError, match=message):
        live.subscribe_query(name, Context(None), {})


def test_a_model_that_is_not_live_cannot_be_published(live: LiveSync) -> None:
    from tests.models import Member

    live.publication("members")(lambda ctx: select(Member))
    with pytest.raises(KeyError, match="no live collection"):
        live.subscribe_query("members", Context(None), {})
