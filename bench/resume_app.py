"""The app ``livesync serve bench.resume_app:live`` that ``bench/resume.py`` benchmarks.

One collection of 10,000 small documents, published whole to everyone as
``bench_resume_docs`` (an unfiltered, unwindowed publication: it resumes from the change
log, not by snapshot). The change log keeps only ``HISTORY`` change sets, so that the
benchmark can make a resume position too old with a thousand writes instead of ten
thousand. Database, broker and topic come from the LIVESYNC_* variables that
``bench/resume.py`` sets.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import LiveSync, Versioned

TABLE = "bench_resume_docs"
HISTORY = 1000  # change sets the broker keeps for resume (the default is 10,000)


class Base(DeclarativeBase):
    pass


class ResumeDoc(Versioned, Base):
    """A document of about 150 bytes of JSON: a title, a counter, a short text, tags."""

    __tablename__ = TABLE

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    n: Mapped[int] = mapped_column(default=0)
    body: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)


live = LiveSync(history=HISTORY)
live.collection(ResumeDoc, name=TABLE, publish=True)
