"""Orders: a plain WSGI app on SQLAlchemy, with a form that posts and a page that lists.

`python -m` this module serves it on http://127.0.0.1:5000/ (`PORT` to change); `DATABASE_URL`
picks the database (default: the SQLite file orders.db). See examples/flask/README.md.
"""

import html
import os
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from livesync import LiveSync, Versioned


class Base(DeclarativeBase):
    pass


class Order(Versioned, Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str]
    item: Mapped[str]


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///orders.db"))
live = LiveSync(engine=engine)  # LIVESYNC_BROKER_URL, LIVESYNC_ORIGINS... from the environment
Session = live.install(sessionmaker(engine))  # every commit of these sessions is captured
live.collection(Order, publish=True)  # the publication `livesync serve` offers: every order
Base.metadata.create_all(engine)
live.upgrade()  # livesync's outbox table (or run `livesync db upgrade` when you deploy)
PAGE = Path(__file__).with_name("page.html").read_text()


def app(environ, start_response):
    """POST / adds an order and redirects; GET / lists every order."""
    if environ["REQUEST_METHOD"] == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode())
        with Session.begin() as session:
            session.add(Order(customer=form["customer"][0], item=form["item"][0]))
        start_response("303 See Other", [("Location", "/")])
        return [b""]
    with Session() as session:
        orders = session.scalars(select(Order).order_by(Order.id)).all()
    items = "".join(f"<li>{html.escape(o.customer)}: {html.escape(o.item)}</li>" for o in orders)
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [PAGE.replace("{{orders}}", items).encode()]


if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ.get("PORT", "5000")), app).serve_forever()
