"""Baseline for ``bench/fanout.py``: Django Channels + channels_redis, one group.

A minimal Django project configured in code (no settings module, no database, no apps
but ``channels``): one ``AsyncWebsocketConsumer`` at ``/ws/`` that joins the group
``fanout`` when it connects and forwards every ``tx`` group message to its client
unchanged. The writer (``bench/fanout.py``) calls ``channel_layer.group_send("fanout",
{"type": "tx", "text": frame})`` on the same channel layer class, so a delivery goes
through the usual Channels path: channel layer -> the consumer's queue -> its handler ->
``send`` -> the ASGI server. Served by uvicorn (the same ASGI server as the python-socketio
baseline; daphne is the other usual choice), one process.

The channel layer is ``RedisPubSubChannelLayer`` by default: ``group_send`` is one Redis
PUBLISH to the group's channel, received once per server process and put on the queue of
every local consumer in the group, which is the shape of the other servers measured (one
Redis message per write, fanned out in the process). ``RedisChannelLayer`` (``--layer
core``) stores one copy of the message per group member in Redis (a Lua script doing K
ZADDs per ``group_send``) and the server pops them one by one, so at K clients it measures
Redis and K round trips as much as the server; it is there to check that claim, not for
the default comparison.

Two properties of this stack show in the figures (channels 4.3, channels_redis 4.3):
every dispatched message first runs ``aclose_old_connections()``, a ``sync_to_async`` hop
to a single thread even with no database configured, so each delivery costs a few hundred
µs of server CPU; and the pub/sub layer's receive task does not yield to the event loop
while Redis has messages buffered for it, so under a write flood it keeps filling the
consumers' queues and the server delivers nothing until the flood ends.

Usage: ``python bench/baselines/channels_app.py --port 8765 --redis-url URL --prefix NAME
[--layer pubsub|core]``
"""

from __future__ import annotations

import argparse
from typing import Any

GROUP = "fanout"
LAYERS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}


def layer_config(layer: str, redis_url: str, prefix: str) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS["default"]`` entry; the writer builds its layer from it too."""
    return {"BACKEND": LAYERS[layer], "CONFIG": {"hosts": [redis_url], "prefix": prefix}}


def application(layer: str, redis_url: str, prefix: str) -> Any:
    """Configure Django in code and return the ASGI application (websocket only)."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="livesync-bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": layer_config(layer, redis_url, prefix)},
        USE_TZ=True,
    )
    django.setup()
    # Channels modules read the settings: import them only once they are configured.
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class Fanout(AsyncWebsocketConsumer):  # type: ignore[misc]
        """Joins ``GROUP`` on connect (the ``groups`` attribute) and relays ``tx``."""

        groups = [GROUP]

        async def tx(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/", Fanout.as_asgi())])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--prefix", default="asgi", help="the channel layer's key prefix")
    parser.add_argument("--layer", choices=sorted(LAYERS), default="pubsub")
    args = parser.parse_args()
    import uvicorn

    app = application(args.layer, args.redis_url, args.prefix)
    print(f"Django Channels ({args.layer}) on ws://{args.host}:{args.port}/ws/", flush=True)
    # uvicorn stops cleanly on SIGINT / SIGTERM.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
