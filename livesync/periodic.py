"""A task repeated in a daemon thread until stopped: the relay and the janitors share it."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("livesync")


class Periodic:
    """Calls :meth:`tick` every ``interval`` seconds in a daemon thread, between
    :meth:`start` and :meth:`stop`.

    A failing tick is logged with ``failure`` and retried after ``interval``: a database
    or broker that is down for a while must not end the loop.
    """

    thread_name = "livesync-periodic"
    failure = "periodic task failed"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One round of work (override)."""
        raise NotImplementedError

    def run_forever(self) -> None:
        """Loop until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("%s; retrying in %.1fs", self.failure, self.interval)
            self._stop.wait(self.interval)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> threading.Thread:
        """Run :meth:`run_forever` in a daemon thread."""
        self._stop.clear()
        thread = threading.Thread(target=self.run_forever, name=self.thread_name, daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for the thread, so no connection outlives it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
