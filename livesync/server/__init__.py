"""The websocket gateway: Sanic app, connection loop, hub and router.

Use ``live.app`` or ``live.blueprint()``; import from here to refuse a connection in an
``@live.authenticate`` function (``raise Unauthorized(...)``) or to build the app yourself.
"""

from .gateway import Gateway, Unauthorized, blueprint, create_app
from .hub import Hub

__all__ = ["Gateway", "Hub", "Unauthorized", "blueprint", "create_app"]
