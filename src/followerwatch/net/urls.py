"""Request URLs with their query encoded once, kept for the next cycle's same request.

A source's request for a group differs only in the group's accounts, and httpx encodes a query
of up to a hundred names character by character on every request. An `httpx.URL` passed to the
client is taken as it is (no re-parsing), so the URL is built once per distinct query, by httpx
itself, and reused while the same accounts are asked again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import cast

import httpx

# A cached group costs 30-90 bytes per account (measured): this holds the groups of 400,000
# (Bluesky, 25 a request) to 1.8 million (X, 100 a request) accounts on one source.
DEFAULT_MAX_BYTES = 48 * 1024 * 1024
# A shorter query (one account's lookup) is cheap to encode, and one URL per account would cost
# a million-account watchlist more memory than it saves time: only groups are kept.
MIN_TEXT = 200
# What an entry costs beyond its text: the URL, its parsed parts, the key and the dict slot.
_ENTRY_OVERHEAD = 400

Key = tuple[str, ...]


def _key(url: str, params: object) -> Key | None:
    """The flat (url, name, value, name, value…) key of a query; None if it cannot be one.

    Only str names and values: 1 == True as keys, yet httpx writes them as "1" and "true".
    """
    pairs: Iterable[object]
    if isinstance(params, Mapping):
        pairs = params.items()
    elif isinstance(params, list | tuple):
        pairs = params
    else:
        return None
    flat: list[str] = [url]
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            return None
        name, value = pair
        if type(name) is not str or type(value) is not str:
            return None
        flat += (name, value)
    return tuple(flat)


class QueryUrls:
    """A bounded cache of fully encoded `httpx.URL`s, keyed by base URL and query params.

    A group whose accounts change asks with another key, so its old URL ages out unused.
    When full, an entry goes only once it is stale: unused for `STALE_ROUNDS` times as many
    lookups as there are entries. A live one stays and the new URL is not kept, so a cycle
    asking more groups than fit still finds those that did (plain LRU would find none).
    """

    STALE_ROUNDS = 4

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, min_text: int = MIN_TEXT) -> None:
        self.max_bytes = max_bytes
        self.min_text = min_text
        self.size = 0
        self._tick = 0
        # Least recently used first; each with its cost and the lookup that last used it.
        self._urls: OrderedDict[Key, tuple[httpx.URL, int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._urls)

    def url(self, url: str, params: object) -> httpx.URL | None:
        """`url` with `params` as its query, as httpx encodes it; None for a short query or
        params of another shape (the caller passes them to httpx as they are)."""
        key = _key(url, params)
        if key is None:
            return None
        text = sum(map(len, key)) - len(url)
        if text < self.min_text:
            return None
        self._tick += 1
        hit = self._urls.get(key)
        if hit is not None:
            self._urls[key] = (hit[0], hit[1], self._tick)
            self._urls.move_to_end(key)
            return hit[0]
        # Built as httpx builds a request's URL from (url, params=...): the same bytes go out.
        built = httpx.URL(httpx.URL(url), params=httpx.QueryParams(cast(httpx.QueryParams, params)))
        cost = _ENTRY_OVERHEAD + len(str(built)) + text + 8 * len(key)
        if self._make_room(cost):
            self._urls[key] = (built, cost, self._tick)
            self.size += cost
        return built

    def _make_room(self, cost: int) -> bool:
        """Drop stale entries until `cost` fits; False when it cannot without a live one."""
        if cost > self.max_bytes:
            return False
        while self.size + cost > self.max_bytes:
            oldest = next(iter(self._urls))
            _, old_cost, used = self._urls[oldest]
            if self._tick - used <= self.STALE_ROUNDS * len(self._urls):
                return False
            del self._urls[oldest]
            self.size -= old_cost
        return True

    def clear(self) -> None:
        """Forget every URL."""
        self._urls.clear()
        self.size = 0
