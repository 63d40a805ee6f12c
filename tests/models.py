"""Models shared by the capture tests: every column kind livesync must publish."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, Numeric, String, Uuid, func
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from livesync import Versioned


class Base(DeclarativeBase):
    pass


class Status(enum.Enum):
    NEW = "new"
    DONE = "done"


class Item(Versioned, Base):
    """A typical document: scalar fields, JSON, a server default and an onupdate value."""

    __tablename__ = "t_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    qty: Mapped[int] = mapped_column(default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[str] = mapped_column(String(20), server_default="born")
    touched: Mapped[int] = mapped_column(default=0, onupdate=lambda: 7)
    secret: Mapped[str | None] = mapped_column(String(50), default=None)


class Tracked(Versioned, Base):
    """A MutableDict JSON column: top-level in-place changes reach the ORM by themselves."""

    __tablename__ = "t_tracked"

    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON), default=dict)


class Folder(Versioned, Base):
    __tablename__ = "t_folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    files: Mapped[list[File]] = relationship(
        back_populates="folder", cascade="all, delete-orphan", order_by="File.id"
    )


class File(Versioned, Base):
    __tablename__ = "t_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("t_folders.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    folder: Mapped[Folder | None] = relationship(back_populates="files")


class Member(Versioned, Base):
    """A composite primary key whose parts may contain the id separator."""

    __tablename__ = "t_members"

    org: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class Typed(Versioned, Base):
    """One column per serialized type."""

    __tablename__ = "t_typed"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    when: Mapped[dt.datetime]
    day: Mapped[dt.date]
    price: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[Status]
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    stamp: Mapped[dt.datetime] = mapped_column(server_default=func.current_timestamp())


class Todo(Versioned, Base):
    """A client-writable document: a client-chosen UUID key, an owner, a JSON list, a field
    the server sets (``created``) and one clients never see (``note``, excluded)."""

    __tablename__ = "t_todos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[int]
    title: Mapped[str] = mapped_column(String(100))
    done: Mapped[bool] = mapped_column(default=False)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created: Mapped[str] = mapped_column(String(20), server_default="born")
    note: Mapped[str | None] = mapped_column(String(50), default=None)


class Plain(Base):
    """Not a live collection (no version column): writes to it are never published."""

    __tablename__ = "t_plain"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
