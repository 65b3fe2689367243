"""A PostgreSQL server of a test's own: initdb in a temporary directory, its own port, killed and restarted at will.

    with OwnPostgres.create() as server:         # initdb + start; stopped and removed at the end
        url = server.url                         # postgresql+psycopg://postgres@127.0.0.1:PORT/hpscape
        server.kill()                            # SIGKILL to every process of the server, as a crashed machine
        server.start()                           # crash recovery, then accepting again

The binaries are PostgreSQL 15's (/usr/lib/postgresql/15/bin). PostgreSQL refuses to run as root: as root the
server runs as the `postgres` user. `netns` runs the server inside a network namespace (listening on an address
there); the test reaches it through its Unix socket (`socket_url`), which no network namespace hides.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "hpscape"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing() -> str | None:
    for tool in ("initdb", "postgres", "pg_isready"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL 15's {tool} is missing at {PG_BIN / tool} (apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "PostgreSQL refuses to run as root and there is no `postgres` user to run it as"
    return None


@dataclass
class OwnPostgres:
    root: Path
    port: int
    host: str = "127.0.0.1"
    netns: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # extra server settings (-c NAME=VALUE)
    process: subprocess.Popen | None = None
    starts: int = 0
    _logs: list[Path] = field(default_factory=list)

    # --- creation ------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, *, host: str = "127.0.0.1", port: int | None = None, netns: str | None = None,
               options: dict[str, str] | None = None) -> OwnPostgres:
        """initdb (trust authentication, user postgres) and start; raises AssertionError saying what is missing."""
        missing = _missing()
        if missing:
            raise AssertionError(missing)
        root = Path(tempfile.mkdtemp(prefix="hps-pg-", dir="/tmp"))  # short: a Unix socket path has 107 bytes
        server = cls(root=root, port=port or free_port(), host=host, netns=netns, options=dict(options or {}))
        os.chmod(root, 0o755)
        (root / "data").mkdir(mode=0o700)
        (root / "socket").mkdir(mode=0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (root / "data", root / "socket"):
                os.chown(path, user.pw_uid, user.pw_gid)
        result = subprocess.run(server._as_owner([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                                                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise AssertionError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        with open(root / "data" / "pg_hba.conf", "a") as hba:  # initdb trusts loopback; also the server's own subnet
            hba.write("host all all samenet trust\n")
        server.start()
        server.sql(f'CREATE DATABASE "{DATABASE}"', database="postgres")
        return server

    def _as_owner(self, command: list[str]) -> list[str]:
        prefix = []
        if self.netns is not None:
            prefix = ["ip", "netns", "exec", self.netns]
        if os.geteuid() == 0:
            prefix += ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        return prefix + command

    # --- addresses -----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Over TCP, on the server's address (inside its network namespace, if it has one)."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{DATABASE}"

    @property
    def socket_url(self) -> str:
        """Over its Unix socket: reachable from any network namespace of this machine."""
        return f"postgresql+psycopg://postgres@/{DATABASE}?host={self.root / 'socket'}&port={self.port}"

    # --- life cycle ----------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server (again) and wait until it accepts connections: after a kill, crash recovery first."""
        assert self.process is None or self.process.poll() is not None, "the server is already running"
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        self._logs.append(log)
        command = self._as_owner([str(PG_BIN / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
                                  "-c", f"listen_addresses={self.host}",
                                  "-c", f"unix_socket_directories={self.root / 'socket'}",
                                  "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
                                  *[arg for name, value in self.options.items() for arg in ("-c", f"{name}={value}")]])
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"PostgreSQL exited with {self.process.returncode}:\n{self.log_tail()}")
            ready = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(self.root / "socket"), "-p",
                                    str(self.port), "-U", "postgres", "-d", "postgres"], capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"PostgreSQL did not accept connections within {timeout_s:.0f} s:\n{self.log_tail()}")

    def members(self) -> list[int]:
        """Live processes of the server's session: the postmaster and its backends."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getsid(int(entry.name)) == self.process.pid:
                        state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
                        if state not in ("Z", "X"):
                            found.append(int(entry.name))
                except (OSError, ProcessLookupError):
                    continue
        return found

    def kill(self) -> None:
        """SIGKILL to every process of the server at once (no shutdown, no checkpoint), and wait until all are gone."""
        assert self.process is not None and self.process.poll() is None, "the server is not running"
        for _ in range(100):
            members = self.members()
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.process.wait(timeout=30)
        assert not self.members(), f"processes of the killed server are left: {self.members()}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.members():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> OwnPostgres:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- helpers -------------------------------------------------------------------------------------------------
    def sql(self, statement: str, *, database: str = DATABASE) -> None:
        import psycopg

        with psycopg.connect(host=str(self.root / "socket"), port=self.port, user="postgres", dbname=database,
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for log in self._logs[-2:]:
            try:
                out.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                out.append(f"--- {log.name}: not written ---")
        return "\n".join(out)
