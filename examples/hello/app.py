"""Hello, live world: a model, a publication, a page: `livesync serve examples.hello.app:live`."""

from pathlib import Path

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import LiveSync, Versioned


class Base(DeclarativeBase):
    pass


class Message(Versioned, Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


live = LiveSync(outbox_grace=0.5)  # other processes' writes reach the page via the relay
live.collection(Message, publish=True)  # clients may read every message, write none
Base.metadata.create_all(live.engine)
live.upgrade()
live.app.static("/", str(Path(__file__).with_name("index.html")), name="page")
