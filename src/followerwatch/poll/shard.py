"""Sharding: which process polls which account, by rendezvous (highest-random-weight) hashing.

Each account's stable key (platform + account name) is hashed together with every shard index;
the shard with the highest hash owns it. Going from N to N+1 shards moves only the accounts the
new shard now wins (about 1/(N+1) of them), and every process computes the same answer alone.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from followerwatch.errors import ConfigError
from followerwatch.models import Account

_SPEC = re.compile(r"^(auto|[0-9]+)/([0-9]+)$")
# owner() hashes every shard index per account: a huge COUNT would hang the process.
MAX_COUNT = 1024
# A StatefulSet names its pods <set>-<ordinal>, and the pod's hostname is its name.
_ORDINAL = re.compile(r"-([0-9]+)$")


@dataclass(frozen=True)
class Shard:
    """This process's shard: `index` of `count` (0-based)."""

    index: int
    count: int

    def owns(self, account: Account) -> bool:
        """Whether this shard polls the account."""
        return owner(account_key(account), self.count) == self.index


def validate_spec(spec: str) -> str:
    """Check the syntax of "INDEX/COUNT" or "auto/COUNT" ("" means one process polls all)."""
    if spec == "":
        return spec
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ValueError(f"shard must be INDEX/COUNT or auto/COUNT, not {spec!r}")
    count = int(match[2])
    if count < 1:
        raise ValueError("shard COUNT must be at least 1")
    if count > MAX_COUNT:
        raise ValueError(f"shard COUNT must be at most {MAX_COUNT}")
    if match[1] != "auto" and int(match[1]) >= count:
        raise ValueError(f"shard INDEX must be 0 to {count - 1} for COUNT {count}")
    return spec.strip()


def resolve(spec: str, hostname: str | None = None) -> Shard | None:
    """The shard a spec names; "auto" takes the index from the hostname's `-N` suffix."""
    spec = validate_spec(spec)
    if not spec:
        return None
    index_text, count_text = spec.split("/")
    count = int(count_text)
    if index_text != "auto":
        return Shard(int(index_text), count)
    host = hostname if hostname is not None else socket.gethostname()
    match = _ORDINAL.search(host.split(".")[0])
    if match is None:
        raise ConfigError(
            f"service.shard: 'auto/{count}' needs a hostname ending in -INDEX "
            f"(a StatefulSet pod), but this host is {host!r}"
        )
    index = int(match[1])
    if index >= count:
        raise ConfigError(
            f"service.shard: host {host!r} has ordinal {index}, outside auto/{count}; "
            "set the StatefulSet's replicas and the shard COUNT to the same number"
        )
    return Shard(index, count)


def account_key(account: Account) -> str:
    """The stable key an account is sharded by: platform and account name (the `account` tag)."""
    return f"{account.platform}\x00{account.name}"


def _weight(key: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, count: int) -> int:
    """The shard (0 to count-1) that owns a key."""
    return max(range(count), key=lambda index: _weight(key, index))


def select(accounts: Iterable[Account], shard: Shard | None) -> list[Account]:
    """The accounts this shard polls (all of them without a shard), in their original order."""
    if shard is None:
        return list(accounts)
    return [a for a in accounts if shard.owns(a)]


def virtual_shards(accounts: Iterable[Account], count: int) -> dict[int, list[Account]]:
    """The accounts of each of `count` virtual shards (PostgreSQL leases), in their order."""
    out: dict[int, list[Account]] = {}
    for account in accounts:
        out.setdefault(owner(account_key(account), count), []).append(account)
    return out
