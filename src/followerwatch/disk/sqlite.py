"""One way to open the service's local SQLite files (WAL, fully synced), and group commit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from followerwatch.disk.full import out_of_space
from followerwatch.errors import StateFileError

T = TypeVar("T")
R = TypeVar("R")

BUSY_TIMEOUT = 10.0  # seconds

log = structlog.get_logger("followerwatch.sqlite")


# What a damaged or read-only file's one line says to do (the CLI prints it, then exits 1).
RESET_HINT = (
    "restore it from a backup, or start afresh with --reset-state on run or poll"
    " (which keeps it beside the new one as {name}.broken-<UTC time>)"
)
READ_ONLY_HINT = "make it and its folder writable for the user followerwatch runs as"
FULL_HINT = "free some space on its disk"
BUSY_HINT = "another process holds it: stop it, or try again"


def open_db(
    path: Path, schema: str, *, check: bool = False, reset_at: datetime | None = None
) -> sqlite3.Connection:
    """Open (creating) a database that survives power loss, and apply its schema.

    With `check`, an existing file must be a sound, writable database (else StateFileError);
    with `reset_at` too, such a file is moved aside (named with that time) and a new one made.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateFileError(path, f"cannot be created ({exc.strerror})", READ_ONLY_HINT) from None
    if check and path.exists():
        try:
            check_db(path)
        except StateFileError as exc:
            # Only a file whose content is bad is set aside; read-only or busy ones never are.
            if reset_at is None or not exc.damaged:
                raise
            kept = set_aside(path, reset_at)
            log.warning(
                "database file damaged; kept aside and started afresh",
                file=str(path),
                problem=exc.problem,
                kept=str(kept),
            )
    if not path.exists():
        _create(path, schema)
    try:
        return _connect(path, schema)
    except sqlite3.DatabaseError as exc:
        raise StateFileError(path, f"cannot be opened ({exc})", _hint(exc)) from None


def check_db(path: Path) -> None:
    """Raise StateFileError unless the file is a non-empty, writable, sound SQLite database."""
    reset = RESET_HINT.format(name=path.name)
    # We never leave an empty file (a new one is made aside and renamed into place), so 0 bytes
    # means it was truncated: opening it would silently start with no outbox and no rule state.
    if path.stat().st_size == 0:
        raise StateFileError(
            path, "is empty (0 bytes): its outbox and rule state are gone", reset, damaged=True
        )
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK):
        raise StateFileError(path, "is read-only", READ_ONLY_HINT)
    try:
        # Quoted: a `?` or `#` in the folder's name would otherwise end the file's name.
        uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            # A write lock too, so a file SQLite can only read fails here, not at the first poll.
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
            raise StateFileError(path, f"cannot be written ({exc})", READ_ONLY_HINT) from None
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise StateFileError(path, f"is in use ({exc})", BUSY_HINT) from None
        if out_of_space(exc):
            raise StateFileError(path, f"cannot be written ({exc})", FULL_HINT) from None
        raise StateFileError(path, f"is damaged ({exc})", reset, damaged=True) from None
    if rows != [("ok",)]:
        detail = " ".join(str(rows[0][0]).replace("*** in database main ***", "").split())
        raise StateFileError(path, f"is damaged (quick_check: {detail})", reset, damaged=True)


def set_aside(path: Path, when: datetime) -> Path:
    """Rename a database and its -wal/-shm to NAME.broken-<UTC time>; the new name."""
    kept = path.with_name(f"{path.name}.broken-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    try:
        # The WAL first: a crash half-way must not leave the old WAL beside a new database.
        for suffix in ("-wal", "-shm", "-journal", ""):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + suffix))
    except OSError as exc:
        raise StateFileError(
            path, f"cannot be moved aside ({exc.strerror})", READ_ONLY_HINT
        ) from None
    return kept


def _create(path: Path, schema: str) -> None:
    """Make a new database aside and rename it into place: never an empty file at `path`."""
    tmp = path.with_name(path.name + ".new")
    sides = [tmp.with_name(tmp.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    try:
        for side in sides:
            side.unlink(missing_ok=True)
        _connect(tmp, schema).close()  # the last connection's close folds the WAL in
        os.replace(tmp, path)
    except (OSError, sqlite3.DatabaseError) as exc:
        for side in sides:
            with contextlib.suppress(OSError):
                side.unlink(missing_ok=True)
        raise StateFileError(path, f"cannot be created ({exc})", _hint(exc)) from None


def _hint(exc: BaseException) -> str:
    return FULL_HINT if out_of_space(exc) else READ_ONLY_HINT


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    # A file may have a second connection (a committer thread): BEGIN IMMEDIATE waits for the
    # other's transaction (the busy timeout) instead of failing with "database is locked".
    db = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed spool line or event is on disk before we go on.
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def insert_many(
    db: sqlite3.Connection, head: str, rows: Sequence[tuple[object, ...]], tail: str = ""
) -> None:
    """`executemany` of an INSERT, as multi-row statements of up to a few hundred rows."""
    # executemany steps (and drops and retakes the GIL) once per row: with a committer thread
    # beside the event loop, each retake is a thread switch, which cost more CPU than the rows.
    if not rows:
        return
    width = len(rows[0])
    per = max(1, min(500, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = f"({','.join('?' * width)})"
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        db.execute(
            f"{head} VALUES {','.join([one] * len(part))}{tail}", [v for r in part for v in r]
        )


class GroupCommitter(Generic[T, R]):
    """A thread with its own connection that commits everything queued in one transaction."""

    def __init__(
        self,
        db: sqlite3.Connection,
        apply: Callable[[sqlite3.Connection, list[T]], list[R]],
        name: str,
    ) -> None:
        self._db = db
        self._apply = apply  # the group's statements, inside the transaction; a result each
        self._name = name
        self._queue: queue.SimpleQueue[_Pending[T, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.commits = 0  # transactions committed (one per group, however many submits)

    async def submit(self, item: T) -> R:
        """Queue an item; its result once the transaction holding it is committed (fsynced)."""
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue an item; a future of its result once its transaction is committed (fsynced)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._put(_Pending(item, loop, future))
        return future

    def post(self, item: T) -> None:
        """Queue an item nobody waits for (from any thread); a failure is only logged."""
        self._put(_Pending(item, None, None))

    def _put(self, pending: _Pending[T, R]) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(pending)

    def close(self) -> None:
        """Commit what is queued, stop the thread and close its connection."""
        with self._start:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
        self._db.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            group: list[_Pending[T, R]] = []
            item = self._queue.get()
            while item is not None:
                group.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            # None is close(): it comes after every item queued before it, so those commit too.
            stop = item is None
            if not group:
                continue
            try:
                results = self._commit([p.item for p in group])
            except Exception as exc:
                if len(group) == 1:
                    group[0].resolve(exc)
                    continue
                # One item's failure must not fail the others: each alone, as without grouping.
                for p in group:
                    try:
                        p.resolve(self._commit([p.item])[0])
                    except Exception as one:
                        p.resolve(one)
                continue
            for p, result in zip(group, results, strict=True):
                p.resolve(result)

    def _commit(self, items: list[T]) -> list[R]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            results = self._apply(self._db, items)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self.commits += 1
        return results


class _Pending(Generic[T, R]):
    """One submitted item and the future its caller awaits."""

    __slots__ = ("future", "item", "loop")

    def __init__(
        self,
        item: T,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[R] | None,
    ) -> None:
        self.item = item
        self.loop = loop  # None: posted, nobody waits
        self.future = future

    def resolve(self, outcome: R | BaseException) -> None:
        """Hand the outcome to the waiting task, on its own loop's thread."""
        if self.loop is None:
            if isinstance(outcome, BaseException):
                log.error("a posted commit failed", error=str(outcome))
            return
        # A closed loop (RuntimeError) has nobody left waiting.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._set, outcome)

    def _set(self, outcome: R | BaseException) -> None:
        assert self.future is not None
        if self.future.done():  # the caller was cancelled; its item is committed all the same
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)
