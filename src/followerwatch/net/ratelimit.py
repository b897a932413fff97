"""Per-credential rate limiting and parsers for the rate-limit header formats platforms use.

Every parser takes raw header text and returns None for anything it cannot read: a garbled header
must never fail a fetch that otherwise succeeded.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from followerwatch.clock import Clock
from followerwatch.errors import RateLimitedError
from followerwatch.models import RateLimit

SAFETY_MARGIN = 1.0
"""Seconds added to a wait: reset stamps are whole seconds (rounded either way) and clocks drift.

It is a whole second whatever the window's length: a reset rounded down may name a moment up to a
second before the window really ends, so anything less is refused at the boundary.
"""
BACKOFF_FIRST = 1.0
"""Seconds of the first back-off after a refusal that names no future reset; doubled per refusal."""
MAX_BACKOFF = 900.0
"""The longest wait believed by default: X's documented 15-minute window."""
CLOCK_SKEW = 30.0
"""Seconds past `max_backoff` a reset may still be believed: a fresh window of exactly
`max_backoff`, stamped by a platform whose clock runs ahead of ours, names a reset that far out."""

ResetParser = Callable[[str | None], datetime | None]

# Plain decimals only: int() and float() also take "1_000", "nan", "inf" and "1e9".
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass(slots=True)
class BudgetShare:
    """How many other live replicas spend the same credentials, and how many requests each may
    have in flight on one: the part of every window this replica leaves to them.

    Mutable on purpose: one per process, shared by every limiter, and updated as replicas come
    and go (`peers`) without rebuilding a source. With `peers` 0 nothing is set aside.

    Why the reserve suffices for 0 × 429, when each replica has at most `per_peer` requests in
    flight per limiter: a replica sends only while its view of `remaining` exceeds its own
    requests in flight plus the reserve, and its view can be stale only by what others sent since
    the answer it came from. Let m be the moment the platform's true remaining reaches the
    reserve. After m, every answer says at most the reserve, and a replica holding such an
    answer sends nothing more in that window (a window's budget only shrinks, see update()). So
    whatever arrives after m was sent on a view older than m, by a replica that had not yet heard
    any answer from after m: all such requests of one replica are in flight together, at most
    `per_peer` of them. Its own requests are already counted by its in-flight accounting, as
    with one replica; those of the `peers` others are at most peers × per_peer, which is the
    reserve. The same bound covers a new window: replicas still holding the old one's answers
    send at most `per_peer` each before they hear of it. All of this needs the reserve uncapped,
    i.e. a limit of at least (peers + 1) × peers × per_peer; below that, a tiny limit keeps
    every replica polling and may see the odd 429. `peers` is set from the live replica count,
    so a replica that joins or leaves changes the reserve for every decision after that.
    """

    peers: int = 0
    per_peer: int = 1

    def reserve(self, limit: int | None) -> int:
        """Units of a window of `limit` left to the other replicas (0 with no peers).

        Never more than a fair part of a tiny limit, limit // (peers + 1), so every replica
        still gets requests through; with no limit known, the full peers × per_peer.
        """
        peers, each = max(self.peers, 0), max(self.per_peer, 0)
        want = peers * each
        if want == 0 or limit is None:
            return want
        return min(want, max(limit, 0) // (peers + 1))


class RateLimiter:
    """The last known budget of one credential, and the wait it implies before the next request.

    A reset more than `max_backoff` (plus CLOCK_SKEW) away is not believed: the wait ends after
    `max_backoff`, and one request then finds out whether the limit still holds. Given a
    BudgetShare, the last `reserve` units of each window are left to the other replicas.
    """

    def __init__(self, max_backoff: float = MAX_BACKOFF, share: BudgetShare | None = None) -> None:
        self.max_backoff = max_backoff
        self._share = share
        self._state: RateLimit | None = None
        self._in_flight = 0
        self._answered: asyncio.Event | None = None
        # Until the first answer, nothing is known of the budget: one request finds out.
        self._first = True
        # Refusals in a row that named no usable reset: each doubles the next back-off.
        self._refusals = 0
        # The reset the platform named when it was beyond max_backoff (so not believed).
        self._not_believed: datetime | None = None

    @property
    def state(self) -> RateLimit | None:
        """The last budget reported by the platform, if any."""
        return self._state

    @property
    def not_believed(self) -> datetime | None:
        """The reset the platform last named beyond `max_backoff`, while the wait it cut holds."""
        return self._not_believed

    def update(self, rl: RateLimit, now: datetime | None = None) -> None:
        """Record what the platform said after a request (answered at `now`, when known)."""
        prev = self._state
        if now is not None and rl.reset_at is not None:
            cap = now + timedelta(seconds=self.max_backoff)
            if rl.reset_at > cap + timedelta(seconds=CLOCK_SKEW):
                self._not_believed = rl.reset_at
                rl = RateLimit(rl.limit, rl.remaining, cap)
            else:
                self._not_believed = None
        if (
            prev is not None
            and prev.reset_at == rl.reset_at
            and prev.limit == rl.limit
            and prev.remaining is not None
            and rl.remaining is not None
            and rl.remaining > prev.remaining
        ):
            # Within one window the budget only shrinks: this answer overtook a later one.
            rl = RateLimit(rl.limit, prev.remaining, rl.reset_at)
        self._state = rl

    def refused(self, limit: int | None, reset_at: datetime | None, now: datetime) -> None:
        """A request answered at `now` was refused for its rate; it may be retried at `reset_at`.

        Without a future reset (missing, or already past when the answer came) the credential
        backs off: BACKOFF_FIRST, doubled per refusal in a row, never more than `max_backoff`.
        Either way every request waiting on this credential waits too.
        """
        if reset_at is None or reset_at <= now:
            seconds = min(BACKOFF_FIRST * 2 ** min(self._refusals, 32), self.max_backoff)
            self._refusals += 1
            reset_at = now + timedelta(seconds=seconds)
        self.update(RateLimit(limit, 0, reset_at), now)

    def accepted(self) -> None:
        """A request was not refused for its rate: the next refusal backs off from the start."""
        self._refusals = 0

    def delay(self, now: datetime) -> float:
        """Seconds to wait before the next request may be sent (0 when free to send)."""
        state = self._state
        if state is None or state.remaining is None or state.reset_at is None:
            return 0.0
        if state.remaining > self._reserve(state):
            return 0.0
        # A reset already past when seen still gets its margin: it may be rounded down.
        return max((state.reset_at - now).total_seconds() + SAFETY_MARGIN, 0.0)

    def _spoken_for(self, now: datetime) -> bool:
        """Whether requests in flight may use up what is left: then the next one waits."""
        if self._in_flight == 0:
            return False
        state = self._state
        if state is None:
            # Nothing known yet (or no budget headers): one request finds out first.
            return self._first
        if state.remaining is None or state.reset_at is None:
            return False
        reserve = self._reserve(state)
        if state.reset_at <= now:
            # An exhausted window has passed; the next one's budget is unknown until answered.
            return state.remaining <= reserve
        return state.remaining <= self._in_flight + reserve

    def _reserve(self, state: RateLimit) -> int:
        """The part of this window left to other replicas on the same credential."""
        return 0 if self._share is None else self._share.reserve(state.limit)

    async def acquire(self, clock: Clock, max_wait: float) -> None:
        """Wait until one more request fits the budget, and count it as in flight.

        Concurrent requests would otherwise all see the same `remaining` and overshoot it:
        what is left is first spoken for by the requests already sent. Pair with release().
        """
        while True:
            if self._spoken_for(clock.now()):
                if self._answered is None:
                    self._answered = asyncio.Event()
                await self._answered.wait()
            elif self.delay(clock.now()) > 0:
                # Everyone who slept until the reset wakes together: look again before sending.
                await self.wait(clock, max_wait)
            else:
                break
        self._in_flight += 1

    def release(self) -> None:
        """A request counted by acquire() was answered (or failed); after update()."""
        self._in_flight -= 1
        self._first = False
        if self._answered is not None:
            self._answered.set()
            self._answered = None

    def exhausted(self, message: str) -> RateLimitedError:
        """The error for a credential that may not send now: when to retry, and what was cut."""
        state = self._state
        retry_at = state.reset_at if state is not None else None
        asked = self._not_believed
        if asked is not None:
            message += (
                f"; the platform asked to wait until {asked:%Y-%m-%d %H:%M:%S} UTC, not believed "
                f"beyond max_backoff ({self.max_backoff:.0f} s)"
            )
        return RateLimitedError(message, retry_at=retry_at, not_believed=asked)

    async def wait(self, clock: Clock, max_wait: float) -> None:
        """Sleep until the budget resets; raise RateLimitedError if that is more than max_wait."""
        seconds = self.delay(clock.now())
        if seconds <= 0:
            return
        if self._not_believed is not None:
            # A wait that was cut is not slept on: polls report it at once, and the first one
            # after the cut sends the single request that finds out.
            raise self.exhausted(f"rate limit exhausted for {seconds:.0f} s")
        if seconds > max_wait:
            raise self.exhausted(
                f"rate limit exhausted for {seconds:.0f} s (more than {max_wait:.0f} s)"
            )
        await clock.sleep(seconds)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value looked up case-insensitively, for plain dicts as well as httpx.Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def parse_count(value: str | None) -> int | None:
    """A non-negative header count; Reddit sends floats such as "598.0", so those are floored."""
    number = _seconds(value)
    return None if number is None else math.floor(number)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if not _DECIMAL.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def reset_from_epoch(value: str | None) -> datetime | None:
    """A reset given as Unix epoch seconds (X, GitHub, Bluesky, Twitch)."""
    number = _seconds(value)
    if number is None:
        return None
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def reset_from_seconds(value: str | None, now: datetime) -> datetime | None:
    """A reset given as seconds from now (Reddit, Telegram's retry_after)."""
    number = _seconds(value)
    if number is None:
        return None
    try:
        return now + timedelta(seconds=number)
    except (OverflowError, ValueError):
        return None


def reset_from_iso(value: str | None) -> datetime | None:
    """A reset given as an ISO-8601 timestamp (Mastodon); a zone-less stamp is read as UTC."""
    if value is None:
        return None
    try:
        return _utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):
        return None


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """A `Retry-After` value: delay seconds or an HTTP-date."""
    if value is None:
        return None
    seconds = reset_from_seconds(value, now)
    if seconds is not None:
        return seconds
    try:
        return _utc(parsedate_to_datetime(value.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _utc(stamp: datetime) -> datetime:
    """`stamp` in UTC (zone-less read as UTC); OverflowError when that leaves years 1-9999.

    "9999-12-31T23:59:59-01:00" parses, but is a moment in the year 10000.
    """
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


def parse_rate_limit(
    headers: Mapping[str, str], prefix: str, reset: ResetParser
) -> RateLimit | None:
    """`{prefix}limit`, `{prefix}remaining` and `{prefix}reset`, the reset read by `reset`."""
    limit = parse_count(header(headers, f"{prefix}limit"))
    remaining = parse_count(header(headers, f"{prefix}remaining"))
    reset_at = reset(header(headers, f"{prefix}reset"))
    if limit is None and remaining is None and reset_at is None:
        return None
    return RateLimit(limit=limit, remaining=remaining, reset_at=reset_at)


def parse_epoch_reset(headers: Mapping[str, str], prefix: str) -> RateLimit | None:
    """Rate-limit headers whose reset is epoch seconds, e.g. prefix `x-rate-limit-` on X."""
    return parse_rate_limit(headers, prefix, reset_from_epoch)
