"""The state database (state.sqlite3): one object per concern over one file, and its doorbell."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from followerwatch.state.accounts import Accounts
from followerwatch.state.behind import WriteBehind
from followerwatch.state.commit import Change, Committer, HeldZero, LastSeen
from followerwatch.state.deliveries import Deliveries
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.events import Events
from followerwatch.state.rules import RuleStates
from followerwatch.state.schema import open_committer, open_state

__all__ = ["Change", "HeldZero", "LastSeen", "StateDB"]


class StateDB:
    """The service's durable memory; single-process, synchronous (local SQLite is fast).

    It only assembles: each concern is its own object, and callers take the one they need.
    """

    def __init__(
        self,
        path: Path,
        *,
        reset_at: datetime | None = None,
        doorbell: Doorbell | None = None,
    ) -> None:
        """Open (creating) the file; a damaged one raises StateFileError unless `reset_at`.

        Storing an event to deliver rings `doorbell` (a new one unless given).
        """
        self.path = path
        self.doorbell = Doorbell() if doorbell is None else doorbell
        db = open_state(path, reset_at=reset_at)
        self._db = db
        # Last counts not yet in the file: the committer writes them, reads lay them over it.
        self.behind = WriteBehind()
        self.accounts = Accounts(db, self.behind)
        self.rules = RuleStates(db, self.behind)
        self.events = Events(db, self.doorbell)
        self.deliveries = Deliveries(db)
        self.committer = Committer(open_committer(path), self.doorbell, self.behind)

    def close(self) -> None:
        """Commit what is queued and kept behind, stop the committer thread, close the databases."""
        self.committer.close()
        self._db.close()
