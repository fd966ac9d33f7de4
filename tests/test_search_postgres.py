"""The search on a real database server: a PostgreSQL cluster of its own (initdb / pg_ctl in a temporary folder,
loopback only, stopped at the end), two search workers as separate processes on one postgresql:// URL."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hfcompress.data import sample_data_dir

from .conftest import save_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


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
def test_two_workers_share_one_study_on_a_postgresql_server(tmp_path, minilm_path, postgres_url):
    import optuna

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=3)
    out = tmp_path / "search"
    command = [sys.executable, "-m", "hfcompress.cli", "search", "--model", str(base), "--task", "sst2",
               "--data_dir", sample_data_dir(), "--output", str(out), "--max-drop", "60", "--budget-trials", "4",
               "--steps", "2", "--max_train_samples", "96", "--max_seq_length", "16", "--batch_size", "16",
               "--layers", "3", "2", "--int8", "none", "torch", "--storage", postgres_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen(command + ["--seed", str(seed)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for seed in (1, 2)]
    outputs = [w.communicate(timeout=900) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="hfcompress-search", storage=postgres_url).trials
    started = [t for t in trials if t.state.name != "WAITING" and "free_step_of" not in t.user_attrs]
    numbers = [t.number for t in started]
    assert len(numbers) == len(set(numbers)) and 4 <= len(numbers) <= 5
    evaluated = [t for t in started if "duplicate_of" not in t.user_attrs and t.state.name == "COMPLETE"]
    folders = {p.name for p in (out / "trials").iterdir()}
    assert {f"trial-{t.number:04d}" for t in evaluated} <= folders  # each evaluated once, in its own folder
    assert all(o.count("after trial") >= 1 for o, _ in outputs)  # both workers took trials
    assert (out / "front.json").is_file()
