"""A throw-away PostgreSQL server for the tests: initdb in a temporary folder, a free port, 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid


class Postgres:
    """Starts `postgres` from the binaries on the PATH; as root it runs the server as 'nobody'."""

    def __init__(self) -> None:
        for binary in ("initdb", "postgres"):
            if shutil.which(binary) is None:
                raise RuntimeError(f"the PostgreSQL tests need `{binary}` on the PATH (Debian: postgresql)")
        self.folder = tempfile.mkdtemp(prefix="poptrain-pg-")
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            os.chmod(self.folder, 0o777)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = os.path.join(self.folder, "data")
        subprocess.run([*self.as_user, "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True)
        self.start()

    def start(self) -> None:
        """Start the server on its data folder and port (again, after `halt`) and wait until it accepts."""
        self.server = subprocess.Popen([*self.as_user, "postgres", "-D", self.data, "-k", self.folder, "-p",
                                        str(self.port), "-h", "127.0.0.1", "-c", "fsync=off", "-c",
                                        "max_connections=200"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait()

    def halt(self) -> None:
        """Stop the server at once, keeping its data: clients lose their connections (a 'fast' shutdown)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        os.kill(postmaster, signal.SIGINT)  # to postgres itself: runuser does not pass SIGINT on
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown
            self.server.wait(10)

    def _wait(self) -> None:
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                psycopg.connect(self.dsn("postgres")).close()
                return
            except psycopg.OperationalError:
                if time.time() > deadline or self.server.poll() is not None:
                    raise RuntimeError("the throw-away PostgreSQL server did not start") from None
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server for good and delete its folder."""
        if self.server.poll() is None:
            self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)
