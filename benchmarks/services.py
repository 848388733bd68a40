"""Throwaway servers of one's own, which a benchmark or a test may stop, restart and freeze: a PostgreSQL cluster and
a Kafka broker.

The shared servers (``scripts/services/*.sh`` on their default ports) serve other tests at the same time and must
never be stopped; outage tests and the chaos benchmark start these instead: a fresh PostgreSQL cluster in a
temporary directory on a free loopback port, from the installed PostgreSQL binaries (owned by the ``postgres`` user
when run as root: initdb and postgres refuse to run as root), and a broker run by ``scripts/services/kafka.sh`` on
other ports and in another directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when PostgreSQL is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
    return found[-1] if found else None


def kafka_jars_fetched() -> bool:
    """Whether a private broker can start without fetching anything (Java and the broker's jars are there)."""
    return shutil.which("java") is not None and any((REPO / ".kafka" / "libs").glob(".complete-*"))


class PrivatePostgres:
    """One cluster: ``start``, ``stop``, ``freeze`` (every server process SIGSTOPped, as a hung machine looks to
    its clients) and ``thaw``."""

    def __init__(self, bin_dir: Path, root: Path, *, durable: bool = False) -> None:
        self._bin = bin_dir
        self._root = root
        # Outage tests need no durability (fsync off is faster); a benchmark of the store's write rate does.
        self._fsync = "on" if durable else "off"
        self._data = root / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://aiops@127.0.0.1:{self.port}/aiops"
        self._frozen: list[int] = []

    def _as_owner(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        self._as_owner(str(self._bin / "initdb"), "-D", str(self._data), "-U", "aiops", "-A", "trust", "--no-sync")
        self.start()
        self._as_owner(str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "aiops", "aiops")

    def start(self) -> None:
        options = f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 -c fsync={self._fsync}"
        self._as_owner(
            str(self._bin / "pg_ctl"), "-D", str(self._data), "-l", str(self._root / "server.log"), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip

    def running(self) -> bool:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        status = subprocess.run(
            [*prefix, str(self._bin / "pg_ctl"), "-D", str(self._data), "status"], check=False, capture_output=True
        )
        return status.returncode == 0

    def stop(self) -> None:
        """A fast shutdown: clients' connections are closed and new ones are refused."""
        self.thaw()
        self._as_owner(str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop")

    def freeze(self) -> None:
        """SIGSTOP the server and every one of its processes: connections stay open but nothing answers."""
        postmaster = int((self._data / "postmaster.pid").read_text().split()[0])
        self._frozen = [postmaster, *_children(postmaster)]
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._frozen:
            with suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def close(self) -> None:
        try:
            if (self._data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


def _children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


@contextmanager
def private_postgres(*, durable: bool = False) -> Iterator[PrivatePostgres]:
    """A running private cluster with an empty database ``aiops``; removed afterwards. ``durable`` keeps fsync on
    (PostgreSQL's default). Raises LookupError when PostgreSQL is not installed."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise LookupError("PostgreSQL is not installed")
    # Not under pytest's tmp_path: the postgres user cannot enter root's private temporary directories.
    root = Path(tempfile.mkdtemp(prefix="aiops-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    server = PrivatePostgres(bin_dir, root, durable=durable)
    try:
        server.create()
        yield server
    finally:
        server.close()


class PrivateBroker:
    """A single-node broker of one's own (``scripts/services/kafka.sh`` on other ports and another directory):
    ``start``, ``stop`` (keeping its data for the next start when asked), ``freeze`` and ``thaw``."""

    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        self._run_dir = run_dir
        self._env = os.environ | {
            "AIOPS_KAFKA_PORT": str(self.port),
            "AIOPS_KAFKA_CONTROLLER_PORT": str(free_port()),
            "AIOPS_KAFKA_RUN_DIR": str(run_dir),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._frozen: int | None = None

    async def _script(self, command: str, **extra: str) -> None:
        # Its output is kept out of the caller's stdout (a benchmark prints its figures there).
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(REPO / "scripts/services/kafka.sh"),
            command,
            env=self._env | extra,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed: {output.decode(errors='replace')[-2000:]}")

    async def start(self, *, keep_data: bool = False) -> None:
        await self._script("start", AIOPS_KAFKA_KEEP_DATA="1" if keep_data else "0")

    async def stop(self) -> None:
        self.thaw()
        await self._script("stop")

    def freeze(self) -> None:
        """SIGSTOP the broker's JVM: its connections stay open but nothing answers."""
        pid = int((self._run_dir / "broker.pid").read_text().strip())
        os.kill(pid, signal.SIGSTOP)
        self._frozen = pid

    def thaw(self) -> None:
        if self._frozen is not None:
            with suppress(ProcessLookupError):
                os.kill(self._frozen, signal.SIGCONT)
            self._frozen = None
