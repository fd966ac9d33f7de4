"""A training run killed after a checkpoint and resumed ends with the same model as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import hfcompress  # noqa: F401

from . import resume_worker

ROOT = Path(__file__).resolve().parent.parent
WORKER = [sys.executable, str(ROOT / "tests" / "resume_worker.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}


METHODS = ["qat", "sharing", "lowrank", "iterative", "theseus", "movement-topK", "movement-threshold",
           "movement-sigmoied_threshold", "movement-magnitude"]


def _run(*args: str) -> None:
    result = subprocess.run([*WORKER, *args], capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> Path:
    """Every method's uninterrupted run, trained once in one process for the whole session (pytest-xdist
    workers share it through a lock on their common temporary folder)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else \
        tmp_path_factory.getbasetemp()
    out = shared / "resume-uninterrupted"
    with FileLock(str(shared / "resume-uninterrupted.lock")):
        if not all((out / method / "final").is_dir() for method in METHODS):
            _run(str(out), *METHODS)
    return out


@pytest.mark.subprocess
@pytest.mark.parametrize("method", METHODS)
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, method, uninterrupted):
    out = tmp_path / "killed"
    process = subprocess.Popen([*WORKER, str(out), method], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=ENV)
    run = out / method / "run"
    deadline = time.time() + 300
    # Kill once a checkpoint is complete (the Trainer writes trainer_state.json last) and before the end.
    while time.time() < deadline and not list(run.glob("checkpoint-*/trainer_state.json")) \
            and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / method / "final").exists(), "the kill must land before the run ends"
    # A run killed while saving leaves a newest checkpoint half-written (the kill above can land there too): the
    # resume must take the newest complete one instead of failing on it.
    half_written = run / "checkpoint-999"
    half_written.mkdir(exist_ok=True)
    (half_written / "config.json").write_text("")
    resume_worker.train(method, str(out / method), resume=True)  # in this process: only the kill needs another
    straight = AutoModelForSequenceClassification.from_pretrained(uninterrupted / method / "final").eval()
    resumed = AutoModelForSequenceClassification.from_pretrained(out / method / "final").eval()
    inputs = {"input_ids": torch.randint(5, 110, (4, 12), generator=torch.Generator().manual_seed(7))}
    with torch.no_grad():
        torch.testing.assert_close(resumed(**inputs).logits, straight(**inputs).logits, atol=1e-5, rtol=0)
    assert [s["method"] for s in resumed.config.quantization_config.steps] == \
        [s["method"] for s in straight.config.quantization_config.steps]
