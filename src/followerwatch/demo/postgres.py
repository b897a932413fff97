"""A throwaway PostgreSQL server on loopback (Debian's binaries), for tests and the bench."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from followerwatch.demo.influxd import free_port

# PostgreSQL refuses to run as root: a root test run starts it as Debian's `postgres` user.
SERVER_USER = "postgres"
_START_ATTEMPTS = 3


class PostgresError(RuntimeError):
    """The throwaway server could not be set up or started."""


def find_bindir() -> Path:
    """Where initdb and postgres are: PATH's, else the newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(os.path.realpath(on_path)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise PostgresError("no initdb found (install it with `apt-get install -y postgresql`)")
    return Path(found[-1]).parent


def _as_server_user() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PostgresError(f"running as root needs a {SERVER_USER!r} user") from exc
    return entry.pw_uid, entry.pw_gid


class TempPostgres:
    """One cluster in a temporary folder, trust auth on 127.0.0.1, user `postgres`."""

    def __init__(self, directory: Path | None = None) -> None:
        """Create the cluster under `directory` (a new temporary folder unless given)."""
        self._ids = _as_server_user()
        # A root pytest's tmp_path is 0700: the server's own user could not enter it.
        base = Path(tempfile.mkdtemp(prefix="fw-pg-", dir=directory))
        base.chmod(0o755)
        self.base = base
        self.data = base / "data"
        self.bindir = find_bindir()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = base / "server.log"

    @property
    def dsn(self) -> str:
        """The libpq connection string of the `postgres` database."""
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        """The libpq connection string of one database on this server."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _preexec(self) -> None:
        if self._ids is not None:
            os.setgid(self._ids[1])
            os.setuid(self._ids[0])

    def _own(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)

    def _initdb(self) -> None:
        self.data.mkdir()
        self._own(self.data)
        self._own(self.base)
        done = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            preexec_fn=self._preexec,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed: {done.stderr.decode(errors='replace')[-500:]}")

    def start(self) -> TempPostgres:
        """Create the cluster (once) and start the server; raise PostgresError on failure."""
        if not self.data.exists():
            self._initdb()
        last = ""
        for _ in range(_START_ATTEMPTS):
            self.port = self.port or free_port()
            try:
                self._spawn()
                return self
            except PostgresError as exc:
                last = str(exc)
                self.port = 0
        raise PostgresError(last)

    def _spawn(self) -> None:
        log = self._log.open("ab")
        self._own(self._log)
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.base}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._preexec,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited: {self._tail()}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not become ready: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server (fast shutdown: open sessions are ended), keeping its data."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT if fast else signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server, wait `down_for` seconds, start it again on the same port."""
        self.stop()
        time.sleep(down_for)
        self._spawn()

    def close(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.base)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
