"""A throw-away MariaDB server on a loopback port, for metadb tests on the MySQL backend."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

from tests.support.tls import TlsFiles


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def mariadb_available() -> bool:
    return bool(
        shutil.which("mariadb-install-db") and (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists())
    )


@contextmanager
def mariadb_server(datadir: Path, port: int | None = None, tls: TlsFiles | None = None) -> Iterator[tuple[str, int]]:
    """Start mariadbd on a data dir (initialised when new), offering TLS with `tls`; yields (host, port);
    root has an empty password."""
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not (datadir / "mysql").exists():
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
        )
    port = port or free_port()
    command = [
        mariadbd,
        "--no-defaults",
        f"--datadir={datadir}",
        f"--socket={datadir}/sock",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        "--user=root",
        "--skip-log-bin",
        "--innodb-buffer-pool-size=32M",
    ]
    if tls is not None:
        command += [f"--ssl-ca={tls.ca}", f"--ssl-cert={tls.cert}", f"--ssl-key={tls.key}"]
    with sql_server("mariadbd", command, port, datadir / "server.log") as address:
        yield address


@contextmanager
def sql_server(
    name: str, command: list[str], port: int, log_path: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[tuple[str, int]]:
    """Run a MySQL-protocol server process until root logs in on 127.0.0.1:`port` with an empty
    password; yields (host, port); stops it afterwards."""
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=1).close()
                break
            except pymysql.err.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def create_database(host: str, port: int, name: str) -> str:
    connection = pymysql.connect(host=host, port=port, user="root", password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        connection.close()
    return f"mysql://root:@{host}:{port}/{name}"
