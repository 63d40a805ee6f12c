"""A batch of fan-out: the frames of consecutive change sets, written once per connection.

Writing to a connection costs one system call, and on this benchmark's loopback TCP that
call (about 8-10 µs, most of it the kernel's) was two thirds of the gateway's CPU per
delivered message. When the hub reads several change sets at once (it fell behind, so
they are waiting anyway), it routes them all first and then writes each connection its
frames in one call: the cost of a delivery falls with the batch, and a change set read
alone costs what it did before.

Most connections subscribe to one key. Their frames are the key's frames, so the batch
joins those once per key and writes the same bytes object to every such connection: per
change set the work is O(keys), and per batch one cheap write per connection
(:class:`Plan`). Connections with several keys, or with a subscription still starting,
get their own list of frames, built per change set as before.

Order is kept per connection: its frames are joined in the order of the change sets, and
the hub flushes a pending batch before it sends anything else to a connection directly
(a channel ``reset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Outlet


@dataclass(frozen=True, slots=True)
class Plan:
    """One key's subscribers, split by how they are served.

    ``solo``: subscribed to this key only, none starting: they share the key's bytes.
    ``mixed``: the rest, framed one by one. Rebuilt (never mutated) when subscriptions
    change, so a batch may hold on to a plan's lists.
    """

    solo: list[Outlet]
    mixed: list[Outlet]


def plan(outlets: set[Outlet], key: str) -> Plan:
    solo: list[Outlet] = []
    mixed: list[Outlet] = []
    for outlet in outlets:
        if not outlet.starting and all(k == key for k in outlet.subs.values()):
            solo.append(outlet)
        else:
            mixed.append(outlet)
    return Plan(solo, mixed)


@dataclass(slots=True)
class Batch:
    """Frames waiting to be written (each already a whole websocket frame)."""

    shared: dict[str, tuple[list[Outlet], list[bytes]]] = field(default_factory=dict)
    own: dict[Outlet, list[bytes]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.shared or self.own)

    def take(self) -> list[tuple[list[Outlet], bytes]]:
        """Each group of connections with the bytes to write to it, once; empties the batch."""
        out = [
            (outlets, frames[0] if len(frames) == 1 else b"".join(frames))
            for outlets, frames in self.shared.values()
        ]
        out.extend(
            ([outlet], frames[0] if len(frames) == 1 else b"".join(frames))
            for outlet, frames in self.own.items()
        )
        self.shared, self.own = {}, {}
        return out
