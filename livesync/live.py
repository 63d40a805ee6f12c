"""The :class:`LiveSync` object: one database, one broker, the live collections between them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapper, Session, sessionmaker

from .brokers import Broker, RedisBroker, connect_broker
from .brokers.memory import MemoryBroker
from .capture import Capture
from .changes import Change, ChangeSet
from .collections import Collection, CollectionError
from .config import Settings, load_settings
from .dispatch import Dispatcher, Outcome
from .documents import encode_id
from .idempotency import RequestJanitor, RequestLog, requests_table
from .methods import Method, MethodFunction
from .outbox import Outbox, OutboxJanitor, Relay
from .protocol import ErrorCode, Limits, Write
from .publications import Context, Publication, Query, SubscriptionError
from .publish import Publisher
from .push import ChannelRule, ChannelRules, Target, encode_push
from .tokens import Tokens
from .writes import Rule, WriteRules

log = logging.getLogger("livesync")

PublicationFunction = Callable[..., Any]


def normalize_database_url(url: str) -> str:
    """Pick livesync's drivers: psycopg 3 for PostgreSQL (``postgresql://`` means psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def async_database_url(url: str) -> str:
    """The asyncio-driver form of a database URL (aiosqlite, psycopg async)."""
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def _tune_sqlite(engine: Engine) -> None:
    """Make SQLite transactions real and serialised, and let readers run beside the writer.

    The stdlib driver does not emit BEGIN before a SAVEPOINT, so RELEASE SAVEPOINT commits
    for good and an outer rollback cannot undo it. SQLAlchemy's documented fix: take the
    driver out of transaction management and emit BEGIN ourselves (IMMEDIATE, unless the
    connection has the ``livesync_readonly`` execution option). WAL mode lets gateways
    and relays read while a writer writes; the busy timeout waits for locks instead of
    failing with "database is locked".
    """
    if engine.dialect.name != "sqlite":
        return
    file_backed = engine.url.database not in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if file_backed:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads, then
        # writes after another connection committed fails at once with "database is
        # locked" (SQLITE_BUSY_SNAPSHOT) instead of waiting. Read-only work opts out.
        readonly = connection.get_execution_options().get("livesync_readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class LiveSync:
    """Live, replicated collections over one database and one broker.

    ``database_url`` and ``broker_url`` default to ``LIVESYNC_DATABASE_URL`` and
    ``LIVESYNC_BROKER_URL``, then to ``sqlite:///livesync.db`` and ``memory://``. Other
    keyword options are the fields of :class:`~livesync.config.Settings`; ``engine`` may
    pass an existing SQLAlchemy engine instead of a URL.

    Sessions from :attr:`sessionmaker`, :attr:`async_sessionmaker` or a factory passed to
    :meth:`install` capture every committed write to a registered :meth:`collection`.
    """

    def __init__(
        self,
        database_url: str | None = None,
        broker_url: str | None = None,
        *,
        engine: Engine | None = None,
        **options: Any,
    ) -> None:
        if engine is not None and database_url is None:
            database_url = engine.url.render_as_string(hide_password=False)
        self.settings: Settings = load_settings(
            database_url=database_url, broker_url=broker_url, **options
        )
        if engine is None:
            engine = create_engine(normalize_database_url(self.settings.database_url))
            _tune_sqlite(engine)
        self.engine: Engine = engine
        self.broker: Broker = connect_broker(
            self.settings.broker_url, history=self.settings.history
        )
        self._collections: dict[str, Collection] = {}
        self._by_mapper: dict[Mapper[Any], Collection] = {}
        self._by_table: dict[Any, Collection] = {}
        self._publications: dict[str, Publication] = {}
        self._writable: dict[str, WriteRules] = {}
        self._methods: dict[str, Method] = {}
        self.authenticator: Callable[[str | None, Any], Any] = self._default_authenticator
        self.channel_rules = ChannelRules()
        self._user_key: Callable[[Any], Any] = lambda identity: identity
        self._outbox = Outbox() if self.settings.outbox else None
        self._janitor = OutboxJanitor(
            self.engine,
            Outbox().table,
            interval=self.settings.outbox_cleanup_interval,
        )
        mode = self.settings.publish_mode
        self._publisher = Publisher(
            self.broker,
            lambda: self.settings.topic,
            self._outbox,
            self._janitor,
            background=mode == "background" or (mode == "auto" and not _in_process(self.broker)),
        )
        self._capture = Capture(
            self._collection_for_mapper,
            self._by_table.get,
            self._collections.__getitem__,
            self._publisher,
            self.settings.bulk_capture_limit,
        )
        #: The instrumented Session class; subclass it or pass it as ``sync_session_class``.
        self.Session: type[Session] = type("LiveSession", (Session,), {})
        self._capture.install(self.Session)
        self._installed: list[Any] = [self.Session]
        self.sessionmaker: sessionmaker[Session] = sessionmaker(self.engine, class_=self.Session)
        if self.settings.writes == "queue":
            from .workqueue import require_redis

            require_redis(self)

    # ------------------------------------------------------------------ sessions
    @cached_property
    def async_engine(self) -> AsyncEngine:
        """An asyncio engine on the same database (aiosqlite or psycopg async)."""
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(async_database_url(self.settings.database_url))

    @cached_property
    def async_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """AsyncSession factory whose sync sessions are instrumented (:attr:`Session`)."""
        return async_sessionmaker(self.async_engine, sync_session_class=self.Session)

    def install(self, session_factory: Any) -> Any:
        """Instrument an application's ``sessionmaker``, ``Session`` subclass or
        ``async_sessionmaker`` (for example Flask-SQLAlchemy's) and return it.

        Installing twice on the same target is an error: it would capture every write twice.
        A bare ``sessionmaker()`` is fine (SQLAlchemy gives each one its own subclass); the
        global ``Session`` class itself is refused because it would capture every session
        in the process.
        """
        if isinstance(session_factory, async_sessionmaker):
            sync_class = session_factory.kw.get("sync_session_class")
            if sync_class is None or sync_class is Session:
                session_factory.configure(sync_session_class=self.Session)
                return session_factory
            target: Any = sync_class
        elif isinstance(session_factory, sessionmaker):
            target = session_factory.class_
        elif isinstance(session_factory, type) and issubclass(session_factory, Session):
            target = session_factory
        else:
            raise TypeError(
                "install() takes a sessionmaker, an async_sessionmaker or a Session subclass, "
                f"not {session_factory!r}"
            )
        if target is Session:
            raise TypeError("refusing to instrument sqlalchemy.orm.Session itself; subclass it")
        if any(issubclass(target, done) or issubclass(done, target) for done in self._installed):
            raise ValueError(f"{target!r} is already instrumented by this LiveSync")
        self._capture.install(target)
        self._installed.append(target)
        return session_factory

    # ------------------------------------------------------------------ collections
    def collection(
        self,
        model: type[Any],
        name: str | None = None,
        exclude: Iterable[str] = (),
        publish: bool = False,
    ) -> Collection:
        """Register ``model`` as a live collection (named after its table by default).

        ``publish=True`` also registers a publication of the same name returning the whole
        collection to anyone; without it, nothing of the collection is readable until a
        :meth:`publication` returns it.
        """
        collection = Collection(model, name=name, exclude=exclude)
        if collection.name in self._collections:
            raise CollectionError(f"a collection named {collection.name!r} is already registered")
        if collection.mapper in self._by_mapper:
            raise CollectionError(f"{model.__name__} is already registered")
        self._collections[collection.name] = collection
        self._by_mapper[collection.mapper] = collection
        self._by_table[collection.table] = collection
        self._capture.watch_json(collection)
        if publish:
            self.publication(collection.name)(lambda ctx: select(model))
        return collection

    def publication(self, name: str) -> Callable[[PublicationFunction], PublicationFunction]:
        """Register ``f(ctx, **params) -> select(Model)...`` as the publication ``name``.

        Parameters are validated from ``f``'s annotations before it runs; raise
        :class:`~livesync.publications.Forbidden` inside ``f`` to refuse an identity.
        """

        def register(function: PublicationFunction) -> PublicationFunction:
            if name in self._publications:
                raise ValueError(f"a publication named {name!r} is already registered")
            self._publications[name] = Publication(name, function, self._resolve)
            return function

        return register

    @property
    def publications(self) -> dict[str, Publication]:
        """Registered publications by name (a copy)."""
        return dict(self._publications)

    def subscribe_query(self, name: str, ctx: Context, params: Mapping[str, Any]) -> Query:
        """Resolve a subscription request; raises SubscriptionError with a protocol code."""
        publication = self._publications.get(name)
        if publication is None:
            raise SubscriptionError(ErrorCode.UNKNOWN_PUBLICATION, f"no publication {name!r}")
        return publication.resolve(ctx, params)

    # ------------------------------------------------------------------ client writes
    def allow(
        self,
        collection: str | Collection | type[Any],
        *,
        schema: type[Any],
        immutable: Iterable[str] = (),
        insert: Rule = None,
        update: Rule = None,
        delete: Rule = None,
        conflicts: str = "reject",
        ids: str = "uuid",
    ) -> WriteRules:
        """Let clients write to a live collection; nothing is writable without this.

        * ``schema``: a pydantic model of the **whole** document (JSON form, as clients see
          it); every write is validated on the document it would produce, and only the
          schema's fields are ever assigned. Document fields outside it are read-only.
        * ``immutable``: fields an update may not change (the key always is).
        * ``insert(ctx, new)``, ``update(ctx, old, new)``, ``delete(ctx, old)``: ``True``
          (anyone), a function returning truthy to allow, or ``None`` (the default:
          denied). Functions run in the write's transaction and see JSON documents; the
          insert and update rules see the document as it will be committed.
        * ``conflicts``: ``"reject"`` (an update or delete must carry the version it was
          made from, and a stale one is a ``conflict``) or ``"last-writer-wins"``.
        * ``ids``: ``"uuid"`` (the client sends a canonical UUID as the key), ``"client"``
          (the client sends any key value), ``"server"`` (the server assigns the key;
          the ack returns it).
        """
        target = self._resolve(collection)
        if target.name in self._writable:
            raise CollectionError(f"{target.name} is already writable; call allow() once")
        rules = WriteRules.build(
            target,
            schema,
            immutable=immutable,
            insert=insert,
            update=update,
            delete=delete,
            conflicts=conflicts,
            ids=ids,
        )
        self._writable[target.name] = rules
        return rules

    def method(self, name: str) -> Callable[[MethodFunction], MethodFunction]:
        """Register ``f(ctx, session, **params)`` as the method ``name`` (see
        :mod:`livesync.methods`): params validated from the annotations, one transaction
        committed after ``f`` returns, the return value sent back in the ``ack``."""

        def register(function: MethodFunction) -> MethodFunction:
            if name in self._methods:
                raise ValueError(f"a method named {name!r} is already registered")
            self._methods[name] = Method(name, function)
            return function

        return register

    @property
    def writable(self) -> dict[str, WriteRules]:
        """Write rules by collection name (a copy)."""
        return dict(self._writable)

    @property
    def methods(self) -> dict[str, Method]:
        """Registered methods by name (a copy)."""
        return dict(self._methods)

    def schemas(self) -> dict[str, Any]:
        """Each writable collection's JSON Schema and write policy (``GET <path>/schemas``)."""
        return {name: rules.describe() for name, rules in sorted(self._writable.items())}

    @cached_property
    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(
            self.engine, self.Session, self._writable.get, self._methods, RequestLog()
        )

    def execute(
        self, ctx: Context, message: Write, *, client: str, changeset_id: str | None = None
    ) -> Outcome:
        """Run one client write or method call in its own transaction (blocking).

        ``client`` scopes idempotency: the same ``(client, message.id)`` is applied once
        and answered from its stored ack afterwards. The gateway calls this from a worker
        thread; see :mod:`livesync.dispatch`.
        """
        return self._dispatcher.execute(ctx, client, message, changeset_id)

    # ------------------------------------------------------------------ server push
    @property
    def push_topic(self) -> str:
        """The broker topic that carries :meth:`send`'s messages to every gateway."""
        return f"{self.settings.topic}:send"

    @cached_property
    def push_broker(self) -> Broker:
        """The broker :meth:`send` publishes on: for Redis, a client of the same server
        keeping only ``push_history`` messages (pushes need no long history); for
        ``memory://``, :attr:`broker` itself."""
        if isinstance(self.broker, RedisBroker):
            return RedisBroker(self.broker.url, history=self.settings.push_history)
        return self.broker

    def send(self, to: Target, event: str, data: Any = None) -> None:
        """Push ``msg {ev: event, data, ch?}`` to connections, from any process.

        ``to`` is :func:`~livesync.push.to_session`, :func:`~livesync.push.to_user` or
        :func:`~livesync.push.to_channel`. Works without a gateway in this process (a web
        worker): it only publishes on the broker (Redis for other processes; ``memory://``
        reaches the gateways of this process only). Delivery is at most once: only to
        connections connected (and joined) when their gateway reads the message; see
        :mod:`livesync.push`. ``data`` must be JSON-serialisable (``TypeError``), and the
        frame at most ``max_queue_bytes`` long (``ValueError``). Not transactional: a call
        inside a transaction sends at once, even if the transaction rolls back later.
        """
        payload = encode_push(to, event, data, self.settings.max_queue_bytes)
        self.push_broker.publish(self.push_topic, payload)

    async def send_async(self, to: Target, event: str, data: Any = None) -> None:
        """:meth:`send` for code running in an event loop (it does not block the loop)."""
        payload = encode_push(to, event, data, self.settings.max_queue_bytes)
        await self.push_broker.publish_async(self.push_topic, payload)

    def channel(self, pattern: str) -> Callable[[ChannelRule], ChannelRule]:
        """Register ``f(ctx, name) -> bool`` deciding who may ``join`` the channels whose
        names match ``pattern`` (a name, or a glob such as ``"room:*"``). Nothing can be
        joined without a rule; the first registered matching pattern decides (see
        :class:`~livesync.push.ChannelRules`)."""

        def register(function: ChannelRule) -> ChannelRule:
            self.channel_rules.add(pattern, function)
            return function

        return register

    def user_key(self, function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Register ``f(identity) -> key``: the user a connection belongs to, for
        :func:`~livesync.push.to_user` (JSON-serialisable; ``None`` for nobody). Without
        it the key is the identity itself."""
        self._user_key = function
        return function

    def user_of(self, identity: Any) -> Any:
        """The user key of an identity (``None`` for anonymous connections)."""
        return None if identity is None else self._user_key(identity)

    @property
    def collections(self) -> dict[str, Collection]:
        """Registered collections by name (a copy)."""
        return dict(self._collections)

    def _collection_for_mapper(self, mapper: Mapper[Any]) -> Collection | None:
        found = self._by_mapper.get(mapper)
        if found is None and mapper.inherits is not None:
            for ancestor in mapper.iterate_to_root():
                found = self._by_mapper.get(ancestor)
                if found is not None:
                    self._by_mapper[mapper] = found
                    break
        return found

    def _resolve(self, collection: str | Collection | type[Any]) -> Collection:
        if isinstance(collection, Collection):
            return collection
        if isinstance(collection, str):
            found = self._collections.get(collection)
        else:
            found = next((c for c in self._collections.values() if c.model is collection), None)
        if found is None:
            raise KeyError(f"no live collection {collection!r}")
        return found

    # ------------------------------------------------------------------ resync
    def resync(
        self, collection: str | Collection | type[Any], ids: Sequence[Any] | None = None
    ) -> ChangeSet:
        """Publish the current state of rows changed outside the ORM, and return it.

        With ``ids`` (primary key values, tuples for composite keys) each row's version is
        bumped and its whole document published, so every reader replaces its copy; ids
        with no row are published as deletes. Without ``ids`` a collection-wide ``reset``
        is published: readers re-read the whole collection.
        """
        target = self._resolve(collection)
        with self.sessionmaker() as session, session.begin():
            if ids is None:
                changes: list[Change] = [Change(target.name, "", "reset")]
            else:
                changes = self._bump(
                    session, target, [k if isinstance(k, tuple) else (k,) for k in ids]
                )
            changeset = ChangeSet(tuple(changes))
            token = self._publisher.prepare(session, changeset)
        self._publisher.committed(changeset, token)
        return changeset

    def _bump(
        self, session: Session, target: Collection, keys: list[tuple[Any, ...]]
    ) -> list[Change]:
        # Core statements on the session's connection: capture must not see these writes.
        conn = session.connection()
        version = target.version_column
        changes: list[Change] = []
        found: set[str] = set()
        for start in range(0, len(keys), 1000):
            where = target.key_in(keys[start : start + 1000])
            conn.execute(update(target.table).where(where).values(target.version_only(version + 1)))
            for row in conn.execute(select(*target.columns).where(where)):
                doc_id = encode_id(target.pk_of_row(row))
                found.add(doc_id)
                new_version = target.version_of_row(row)
                doc = target.document_from_row(row)
                changes.append(
                    Change(target.name, doc_id, "update", new_version, new_version - 1, doc)
                )
        # Rows that no longer exist are published as deletes without a version.
        gone = dict.fromkeys(encode_id(k) for k in keys).keys() - found
        changes.extend(Change(target.name, doc_id, "delete") for doc_id in sorted(gone))
        return changes

    # ------------------------------------------------------------------ serving
    @cached_property
    def limits(self) -> Limits:
        """Per-connection protocol limits, from the settings."""
        st = self.settings
        return Limits(
            max_frame_bytes=st.max_frame_bytes,
            max_subscriptions=st.max_subscriptions,
            max_queue_bytes=st.max_queue_bytes,
            snapshot_chunk=st.snapshot_chunk,
            rate_per_second=st.rate_per_second,
            rate_burst=st.rate_burst,
            write_rate_per_second=st.write_rate_per_second,
            write_rate_burst=st.write_rate_burst,
            max_channels=st.max_channels,
        )

    @cached_property
    def tokens(self) -> Tokens:
        """Signed, expiring tokens for the websocket (needs ``LIVESYNC_SECRET``)."""
        return Tokens(self.settings.secret or "", max_age=self.settings.token_max_age)

    def authenticate(self, function: Callable[[str | None, Any], Any]) -> Callable[..., Any]:
        """Register ``f(token, request) -> identity`` (sync or async) for ``hello``.

        Raise ``livesync.server.Unauthorized`` (close 4503) or a ``TokenError`` (4503, or
        4505 when expired) to refuse. Without one, a configured ``secret`` makes tokens from
        :attr:`tokens` required; with neither, connections are anonymous (identity None)
        and publications decide what they may read. In queue mode (``writes="queue"``)
        the identity travels to the workers as JSON, so it must survive a JSON round trip
        unchanged (a dict with string keys, a string, a number...).
        """
        self.authenticator = function
        return function

    def _default_authenticator(self, token: str | None, request: Any) -> Any:
        if self.settings.secret is None:
            return None
        if token is None:
            from .tokens import TokenError

            raise TokenError("a token is required")
        return self.tokens.verify(token)

    @cached_property
    def app(self) -> Any:
        """A ready Sanic app: ``/live`` websocket, ``/healthz``, ``/metrics``."""
        from .server.gateway import create_app

        return create_app(self, self.settings.websocket_path)

    def blueprint(self, path: str = "/live") -> Any:
        """A Sanic blueprint mounting livesync into an existing app."""
        from .server.gateway import blueprint

        return blueprint(self, path)

    # ------------------------------------------------------------------ operations
    def upgrade(self, revision: str = "head") -> None:
        """Create or upgrade livesync's own tables (the outbox, the stored write answers)
        with its Alembic migrations."""
        from .migrate import upgrade

        upgrade(self.engine, revision)

    def relay(self) -> Relay:
        """A relay for this database's outbox (call ``start()`` or ``run_forever()``)."""
        topic = self.settings.topic
        return Relay(
            self.engine,
            Outbox().table,
            lambda payload: self.broker.publish(topic, payload),
            grace=self.settings.outbox_grace,
            batch=self.settings.relay_batch,
            interval=self.settings.relay_interval,
        )

    def request_janitor(self) -> RequestJanitor:
        """Deletes stored write answers older than ``request_retention`` (call ``start()``)."""
        return RequestJanitor(
            self.engine,
            requests_table(),
            retention=self.settings.request_retention,
            interval=self.settings.request_cleanup_interval,
        )

    def close(self) -> None:
        """Flush the outbox janitor and release the broker's and engines' connections."""
        self._publisher.close()
        self._janitor.close()
        self.broker.close()
        if "push_broker" in self.__dict__ and self.push_broker is not self.broker:
            self.push_broker.close()
        self.engine.dispose()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio programs: also disposes the async engine and clients."""
        if "async_engine" in self.__dict__:
            await self.async_engine.dispose()
        await self.broker.aclose()
        if "push_broker" in self.__dict__ and self.push_broker is not self.broker:
            await self.push_broker.aclose()
        self.close()


def _in_process(broker: Broker) -> bool:
    return isinstance(broker, MemoryBroker)
