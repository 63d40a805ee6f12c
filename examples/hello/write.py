"""`python -m examples.hello.write "some text"`: a plain SQLAlchemy write, from any process."""

import sys

from examples.hello.app import Message, live

with live.sessionmaker() as session:
    count = session.query(Message).count()
    session.add(Message(id=count + 1, text=" ".join(sys.argv[1:]) or "hello, live world"))
    session.commit()
