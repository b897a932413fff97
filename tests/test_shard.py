"""Sharding: rendezvous hashing as a pure function, then three real `run` processes on one list."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from fakes.fake_x import TOKEN, FakeX, Seen, make_user
from followerwatch.clock import SystemClock
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import Account
from followerwatch.poll.shard import (
    Shard,
    account_key,
    owner,
    resolve,
    select,
    validate_spec,
    virtual_shards,
)
from followerwatch.service.groups import plan_groups
from followerwatch.store.influx_v1 import InfluxV1Store

KEYS = [f"x\x00user_{i}" for i in range(10_000)]


def test_each_key_has_exactly_one_owner_and_shards_are_balanced() -> None:
    owners = Counter(owner(key, 3) for key in KEYS)
    assert set(owners) == {0, 1, 2}
    for count in owners.values():
        assert abs(count - len(KEYS) / 3) < 0.05 * len(KEYS), owners
    accounts = [Account("x", f"user_{i}", f"user_{i}") for i in range(300)]
    parts = [select(accounts, Shard(i, 3)) for i in range(3)]
    assert sorted(a.name for part in parts for a in part) == sorted(a.name for a in accounts)


def test_going_from_3_to_4_shards_moves_about_a_quarter_and_only_to_the_new_shard() -> None:
    before = {key: owner(key, 3) for key in KEYS}
    after = {key: owner(key, 4) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert 0.22 < len(moved) / len(KEYS) < 0.28, len(moved)
    assert {after[key] for key in moved} == {3}


def test_shard_specs_and_the_statefulset_ordinal() -> None:
    assert resolve("") is None
    assert resolve("1/3") == Shard(1, 3)
    assert resolve("auto/3", hostname="followerwatch-2") == Shard(2, 3)
    assert resolve("auto/3", hostname="followerwatch-0.followerwatch.ns.svc") == Shard(0, 3)
    with pytest.raises(ConfigError, match="hostname ending in -INDEX"):
        resolve("auto/3", hostname="laptop")
    with pytest.raises(ConfigError, match="outside auto/3"):
        resolve("auto/3", hostname="followerwatch-3")
    assert resolve("0/1024") == Shard(0, 1024)
    for bad in ("3/3", "a/3", "1/0", "1", "-1/3", "0/1025", "1/99999999999999999999"):
        with pytest.raises(ValueError):
            validate_spec(bad)


def test_bad_shard_on_the_command_line_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text("[service]\nops_address = ''\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWERWATCH_")}
    for shard, message in (
        ("5/3", "invalid --shard"),
        ("1/99999999999999999999", "at most 1024"),
        ("auto/3", "hostname ending in -INDEX"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "followerwatch", "poll", "-c", str(config), "--shard", shard],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if shard.startswith("auto") and proc.returncode == 0:
            pytest.skip("this host's name ends in -N, so auto resolves")
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.splitlines()) == 1
    # The same cap in the config file: one line naming the key, exit 2.
    config.write_text("[service]\nops_address = ''\nshard = '0/99999999999999999999'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "followerwatch", "poll", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "shard" in proc.stderr and "at most 1024" in proc.stderr


USERS = 60


def _requested(fake: FakeX, seen: Seen) -> frozenset[str]:
    args = seen.args
    if "usernames" in args:
        return frozenset(name.lower() for name in args["usernames"].split(","))
    by_id = {u["id"]: u["username"].lower() for u in fake.users.values()}
    return frozenset(by_id[i] for i in args["ids"].split(","))


async def test_three_processes_poll_every_account_exactly_once_per_cycle(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    fake = FakeX(httpserver, SystemClock())
    fake.limit = fake.remaining = 10**9
    users = [make_user(i) for i in range(USERS)]
    fake.add(*users)
    config = tmp_path / "fw.toml"
    config.write_text(
        f"""
[service]
log_format = "json"
ops_address = ""
[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"
[platforms.x]
bearer_token = "{TOKEN}"
base_url = "{fake.base_url}"
interval = "1s"
batch_size = 10
"""
        + "".join(f'[[watch]]\nplatform = "x"\nhandle = "{u["username"]}"\n' for u in users)
    )
    # The groups each shard should poll, as plan_groups makes them.
    expected: dict[frozenset[str], int] = {}
    for index in range(3):
        os.environ["FOLLOWERWATCH_SERVICE__SHARD"] = f"{index}/3"
        try:
            groups = plan_groups(load_config(config))
        finally:
            del os.environ["FOLLOWERWATCH_SERVICE__SHARD"]
        for group in groups:
            expected[frozenset(a.handle.lower() for a in group.accounts)] = index
    planned = [name for group in expected for name in group]
    assert sorted(planned) == sorted(u["username"] for u in users)  # each in exactly one group

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "followerwatch", "run", "-c", str(config), "--shard", f"{i}/3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "FOLLOWERWATCH_SERVICE__DATA_DIR": str(tmp_path / f"data{i}")},
        )
        for i in range(3)
    ]
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            polled = Counter(_requested(fake, s) for s in list(fake.seen))
            if len(polled) >= len(expected) and min(polled.values()) >= 3:
                break
            time.sleep(0.1)
    finally:
        outputs = []
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            out, _ = proc.communicate(timeout=20)
            outputs.append(out)
            assert proc.returncode == 0, out

    polled = Counter(_requested(fake, s) for s in fake.seen)
    # Every request is one planned group of one shard: nobody polled another shard's account.
    assert set(polled) == set(expected), set(polled) ^ set(expected)
    assert min(polled.values()) >= 3
    # Within a shard all groups share one interval, so per cycle each is polled once.
    for index in range(3):
        rounds = [n for group, n in polled.items() if expected[group] == index]
        assert max(rounds) - min(rounds) <= 1, (index, rounds)
    # Each process kept state for exactly its own accounts.
    for index in range(3):
        with sqlite3.connect(tmp_path / f"data{index}" / "state.sqlite3") as db:
            stored = {row[0] for row in db.execute("SELECT account FROM accounts")}
        mine = {name for group, i in expected.items() if i == index for name in group}
        assert stored == mine
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        series = await store.query("SELECT count(followers) FROM followers GROUP BY account")
    assert {s["tags"]["account"] for s in series} == {u["username"] for u in users}


def test_virtual_shards_cover_every_account_once_and_plan_per_shard(tmp_path: Path) -> None:

    accounts = [Account("github", f"user{i}", f"user{i}") for i in range(300)]
    by_shard = virtual_shards(accounts, 64)
    assert sorted(a.name for members in by_shard.values() for a in members) == sorted(
        a.name for a in accounts
    )
    for vshard, members in by_shard.items():
        assert all(owner(account_key(a), 64) == vshard for a in members)
    # About 300/64 accounts each: the hash spreads them (no shard holds a fifth of them).
    assert len(by_shard) > 50 and max(len(m) for m in by_shard.values()) < 60

    config_path = tmp_path / "c.toml"
    config_path.write_text(
        "[platforms.github]\nbatch_size = 2\n"
        + "".join(f'[[watch]]\nplatform = "github"\nhandle = "user{i}"\n' for i in range(300))
    )
    config = load_config(config_path)
    held = {s: by_shard[s] for s in sorted(by_shard)[:3]}
    groups = plan_groups(config, held)
    assert {g.name.rsplit("@", 1)[1] for g in groups} == {str(s) for s in held}
    for group in groups:
        vshard = int(group.name.rsplit("@", 1)[1])
        assert all(owner(account_key(a), 64) == vshard for a in group.accounts)
    assert sorted(a.name for g in groups for a in g.accounts) == sorted(
        a.name for members in held.values() for a in members
    )
