"""The doorbell: writing a new event to deliver rings it, and the outbox waits on it."""

from __future__ import annotations

import asyncio


class Doorbell:
    """A flag that wakes whoever waits for it; made first and handed to ringer and waiter.

    Not an asyncio.Event: one doorbell outlives event loops (a state database used by several
    `asyncio.run`s), so a waiter's future is made on the loop that waits.
    """

    def __init__(self) -> None:
        self._rung = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def rung(self) -> bool:
        """Whether it rang since the last `clear`."""
        return self._rung

    def ring(self) -> None:
        """Set the flag and wake every waiter (on the loop's thread: it only sets a flag)."""
        self._rung = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Forget earlier rings: the next `wait` waits for a new one."""
        self._rung = False

    async def wait(self) -> None:
        """Return once it has rung (at once if it has since the last `clear`)."""
        if self._rung:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
