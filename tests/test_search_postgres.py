"""The search on a real database server: a PostgreSQL cluster of its own (initdb / pg_ctl in a temporary folder,
loopback only, stopped at the end), two search workers as separate processes on one postgresql:// URL."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import save_tiny_bert
from .test_search import kill_a_worker_and_let_another_finish, run_two_workers_on_one_study


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'psycopg[binary]'")
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres account
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    work = Path(tempfile.mkdtemp(prefix="hfcompress-pg-", dir="/tmp"))
    data, port = work / "data", _free_port()
    if as_user:
        os.chmod(work, 0o777)
    run = lambda *command: subprocess.run([*as_user, *map(str, command)], check=True, capture_output=True,  # noqa: E731
                                          text=True, timeout=120)
    try:
        run(bin_dir / "initdb", "-D", data, "-U", "hf", "--auth=trust")
        run(bin_dir / "pg_ctl", "-D", data, "-l", work / "server.log", "-w", "-o",
            f"-p {port} -h 127.0.0.1 -k {work}", "start")
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "hf", "hfsearch")
        yield f"postgresql://hf@127.0.0.1:{port}/hfsearch"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_workers_share_one_study_on_a_postgresql_server(tmp_path, minilm_path, postgres_url, capsys):
    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=3)
    run_two_workers_on_one_study(base, tmp_path / "search", postgres_url, capsys, compare_alone=False)


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_killed_worker_trial_is_finished_by_another_on_a_postgresql_server(tmp_path, minilm_path, postgres_url):
    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=3)
    kill_a_worker_and_let_another_finish(base, tmp_path / "search", postgres_url)
