import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_theseus_worker.py")


@pytest.mark.subprocess
def test_theseus_two_processes_train_the_same_successor(tmp_path):
    # torchrun is the launcher we document for CPU multi-process (accelerate's CPU launcher
    # started a single process in our tries); the draws are seeded per step, so both ranks
    # must take the same paths and end with identical weights.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         str(WORKER), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    draws = []
    for rank in (0, 1):
        with safe_open(tmp_path / f"rank{rank}.safetensors", "pt") as handle:
            assert handle.metadata()["world_size"] == "2"
            draws.append(json.loads(handle.metadata()["draws"]))
    assert draws[0] == draws[1]  # the same replacement paths on both processes
    flat = [b for draw in draws[0] for b in draw]
    assert len(draws[0]) == 6 and True in flat and False in flat
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and any("layer.2." in k for k in rank0)
    assert not any("layer.3." in k for k in rank0)  # exported: 3 layers
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


PRUNING_WORKER = Path(__file__).with_name("ddp_pruning_worker.py")


# accelerate starts two CPU processes with --multi_gpu when no GPU is visible (its --cpu flag starts one, and
# --cpu --multi_gpu is refused); both launchers hand the script torchrun's environment and gloo.
LAUNCHERS = {
    "torchrun": lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                              str(port)],
    "accelerate": lambda port: [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                                "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                                "--main_process_port", str(port)],
}


@pytest.mark.subprocess
# Each method under one launcher (the pipeline test below runs movement under torchrun too).
@pytest.mark.parametrize("method, launcher, port", [("iterative", "torchrun", 29535), ("movement", "accelerate", 29536)])
def test_pruning_on_two_processes_decides_alike_and_equals_one_process(tmp_path, method, launcher, port, monkeypatch):
    # Movement scores are parameters (DDP averages their gradients); iterative importance runs on the same batches
    # everywhere, and the linears a round creates get their gradients averaged by the callback. With the same
    # global batch (2 x 4 vs 1 x 8, sequential order, SGD) the saved models equal the one-process run to float noise.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([*LAUNCHERS[launcher](port), str(PRUNING_WORKER), method, str(tmp_path / "two")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _run_alone(PRUNING_WORKER, [method, str(tmp_path / "one")], monkeypatch)
    rank0, rank1 = load_file(tmp_path / "two" / "rank0.safetensors"), load_file(tmp_path / "two" / "rank1.safetensors")
    alone = load_file(tmp_path / "one" / "rank0.safetensors")
    records = [safe_open(tmp_path / folder / "rank0.safetensors", "pt").metadata()["record"] for folder in ("two", "one")]
    assert records[0] == records[1]  # the same heads / neurons removed (iterative); movement records no shape
    assert rank0.keys() == rank1.keys() == alone.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], alone[key], atol=1e-6, rtol=0)
        assert torch.equal(rank0[key] == 0, alone[key] == 0), key  # the same weights pruned


def _run_alone(script: Path, argv: list[str], monkeypatch) -> None:
    """The one-process run, in this process with one thread (as each rank has: OMP_NUM_THREADS=1), so that float
    sums come out in the ranks' order."""
    import runpy

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)


def _pipeline_command(launcher: list[str], recipe, base, out) -> list[str]:
    from hfcompress.data import sample_data_dir

    return [*launcher, "-m", "hfcompress", "compress", "--config", str(recipe), "--model", str(base), "--task", "sst2",
            "--data_dir", sample_data_dir(), "--output", str(out), "--no-measure"]


@pytest.mark.subprocess
def test_a_pipeline_on_two_processes_equals_one_process_and_resumes_after_a_kill(tmp_path, minilm_path):
    """`torchrun --nproc_per_node 2 -m hfcompress compress` (and `accelerate launch`): every training stage kind
    (Theseus layers, movement, iterative heads/FFN, QAT) runs data-parallel, the main process alone writes stage
    folders and the card, and with the same global batch (2 x 4 vs 1 x 8, sequential order, SGD, no dropout) the
    final weights equal a one-process run's; a torchrun run killed after its first stage resumes by stage."""
    import signal
    import time

    import yaml
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=4, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    steps = {"training": {"max_steps": 4}}
    recipe = {"max_seq_length": 16, "max_train_samples": 64, "seed": 3, "calibration_batches": 1,
              "training": {"per_device_train_batch_size": 8, "save_steps": 2, "use_cpu": True, "optim": "sgd",
                           "learning_rate": 0.05, "train_sampling_strategy": "sequential"},
              "stages": [{"stage": "layers", "strategy": "theseus", "layers": 2, **steps},
                         {"stage": "train", "methods": [{"method": "movement", "final_remaining": 0.5,
                                                         "initial_warmup": 1, "final_warmup": 1}], **steps},
                         {"stage": "train", "methods": [{"method": "heads", "target": 0.5, "iterations": 2},
                                                        {"method": "ffn", "target": 0.5, "iterations": 2}],
                          "iterative": {"prune_every": 2}, **steps},
                         {"stage": "train", "methods": [{"method": "qat"}], **steps}]}
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump(recipe))
    recipe["training"]["per_device_train_batch_size"] = 4
    two.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = lambda command: subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)  # noqa: E731

    from hfcompress.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # in this process with one thread, as each rank has (OMP_NUM_THREADS=1)
    try:
        assert main(_pipeline_command([], one, base, tmp_path / "alone")[2:]) == 0
    finally:
        torch.set_num_threads(threads)

    # torchrun, killed (SIGKILL to the launcher's process group) once the first stage folder exists, then resumed.
    out = tmp_path / "torchrun"
    command = _pipeline_command(LAUNCHERS["torchrun"](29541), two, base, out)
    doomed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "stages" / "01-theseus2").is_dir() and doomed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=60)
    assert (out / "stages" / "01-theseus2").is_dir() and not (out / "README.md").exists()
    resumed = run(command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "01-theseus2: already finished" in resumed.stdout + resumed.stderr
    stages = sorted(p.name for p in (out / "stages").iterdir())
    assert len(stages) == 4 and stages[0] == "01-theseus2", stages
    assert (out / "README.md").is_file() and not (out / "work").exists()

    accelerate = run(_pipeline_command(LAUNCHERS["accelerate"](29542), two, base, tmp_path / "accelerate"))
    assert accelerate.returncode == 0, accelerate.stderr[-3000:]

    single = load_file(tmp_path / "alone" / "model.safetensors")
    for folder in (out, tmp_path / "accelerate"):
        parallel = load_file(folder / "model.safetensors")
        assert parallel.keys() == single.keys()
        for key in single:
            assert parallel[key].shape == single[key].shape, key  # the same heads / neurons removed
            torch.testing.assert_close(parallel[key], single[key], atol=2e-5, rtol=1e-4, msg=key)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
