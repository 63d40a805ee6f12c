"""The dashboard's gateway: ``livesync serve examples.dashboard.app:live --port 8001``.

Configured by ``LIVESYNC_DATABASE_URL`` and ``LIVESYNC_BROKER_URL`` like any livesync
process. The collections, publications, write rule and page are declared in
:mod:`livesync.demo.app` (so that ``livesync demo`` works from an installed package too);
this module only puts them on a :class:`~livesync.LiveSync` of its own.
"""

from livesync import LiveSync
from livesync.demo.app import mount, register, setup

live = register(LiveSync())
setup(live)  # creates the tables if missing; idempotent
app = mount(live)
