"""Poll batches the full disk kept from being committed: in memory, in order, retried by a task."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from followerwatch.disk.full import MemoryBuffer, out_of_space

log = structlog.get_logger("followerwatch.waiting")

T = TypeVar("T")

RETRY_FIRST = 0.5  # seconds before the first retry; doubling up to RETRY_MAX
RETRY_MAX = 5.0
FAILURES_MAX = 3  # failures other than a full disk before the oldest batch is given up


class WaitingBatches(Generic[T]):
    """A FIFO of batches (with their readings, within a MemoryBuffer) and the task retrying it.

    One task stores them oldest first (`ready` evaluates a batch when its turn comes, `store`
    commits it), so they are stored in the order they arrived.
    """

    def __init__(
        self,
        buffer: MemoryBuffer,
        ready: Callable[[T], Awaitable[T]],
        store: Callable[[T], Awaitable[None]],
        dropped: Callable[[T], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self._ready = ready
        self._store = store
        self._dropped = dropped  # told of a batch given up (as far as it got), to undo its work
        self._failures = 0  # failures of the oldest batch other than a full disk
        self.batches: deque[tuple[T, int]] = deque()
        self.problem: str | None = None  # why batches wait ("disk full: ..."), None when none do
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._stored = 0  # readings stored from memory since the disk filled

    @property
    def readings(self) -> int:
        """Readings waiting here."""
        return sum(n for _, n in self.batches)

    def hold(self, batch: T, readings: int) -> bool:
        """Queue a batch behind the others; False (counted as dropped) past the memory bound."""
        # Batches without readings (a platform down) count too, or they would grow unbounded.
        if len(self.batches) >= max(1, self.buffer.limit):
            self.buffer.drop(readings)
            return False
        if not self.buffer.take(readings):
            return False
        self.batches.append((batch, readings))
        self._start()
        return True

    def head(self) -> T | None:
        """The oldest waiting batch."""
        return self.batches[0][0] if self.batches else None

    def done(self, batch: T) -> None:
        """The oldest batch is stored (or given up): release its room."""
        if self.batches and self.batches[0][0] is batch:
            _, readings = self.batches.popleft()
            self.buffer.release(readings)
            self._stored += readings
            self._failures = 0

    def failed(self, exc: BaseException, head: T | None = None) -> None:
        """The disk refused a write; `head` replaces the oldest batch (now evaluated)."""
        if self.problem is None:
            log.error(
                "disk full: cannot commit rule state; holding readings in memory",
                error=str(exc),
                memory_buffer=self.buffer.limit,
            )
        self.problem = f"disk full: {exc}"
        if head is not None and self.batches:
            self.batches[0] = (head, self.batches[0][1])

    async def replay(self) -> bool:
        """Store waiting batches oldest first until none is left or the disk refuses; empty?"""
        while self.batches:
            head = ready = self.batches[0][0]
            try:
                ready = await self._ready(head)
                await self._store(ready)
            except Exception as exc:
                if out_of_space(exc):
                    self.failed(exc, ready)  # kept evaluated: nothing of it is committed
                    return False
                if self._broken(ready, exc):
                    continue
                return False
            self.done(head)
        self.recovered()
        return True

    def _broken(self, ready: T, exc: Exception) -> bool:
        """The oldest batch failed, not for a full disk: kept for a retry; dropped at the 3rd?"""
        self._failures += 1
        if self._failures < FAILURES_MAX:
            log.warning("a held batch failed to store; retrying", error=repr(exc))
            self.batches[0] = (ready, self.batches[0][1])  # kept as far as it got
            return False
        _, readings = self.batches.popleft()
        self.buffer.release(readings)
        self._failures = 0
        self.buffer.dropped += readings
        log.error(
            "a held batch kept failing to store; dropped",
            error=repr(exc),
            failures=FAILURES_MAX,
            dropped_readings=readings,
        )
        if self._dropped is not None:
            self._dropped(ready)
        return True

    def recovered(self) -> None:
        """A commit went through: with no batch left waiting, the disk problem is over."""
        if self.problem is None or self.batches:
            return
        log.warning(
            "disk has space again: readings held in memory are stored, in order",
            readings=self._stored,
            dropped_readings=self.buffer.dropped,
        )
        self.problem = None
        self._stored = 0

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while self.batches:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                empty = await self.replay()
            except Exception:  # the retry must outlive any one failure
                log.exception("replay of held batches failed")
                empty = False
            if self._closing:
                break
            delay = RETRY_FIRST if empty else min(RETRY_MAX, delay * 2)
        self.recovered()

    async def close(self) -> int:
        """Stop retrying after one last try; the readings still waiting (lost), logged."""
        # Never cancelled mid-store: a commit it no longer awaits would be replayed twice.
        self._closing = True
        self._wake.set()
        if self._task is not None and not self._task.done():
            await self._task
        elif self.batches:
            with contextlib.suppress(Exception):
                await self.replay()
        lost = self.readings
        if self.batches:
            log.error(
                "disk still full at shutdown: readings held in memory are lost",
                readings=lost,
                batches=len(self.batches),
            )
        return lost
