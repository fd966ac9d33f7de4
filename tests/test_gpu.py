"""On CUDA: each training-time method runs a few steps under fp16 and bf16 autocast and the result reloads.

Skipped where there is no CUDA device (this project's CI has none); a user's GPU machine runs them.
"""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hfcompress import (CompressionTrainer, DynamicQuantConfig, FFNPruningConfig, HeadPruningConfig,
                        IterativePruningCallback, LowRankConfig, MovementPruningConfig, QuantAwareConfig,
                        TheseusConfig, WeightSharingConfig, compress)

from .conftest import tiny_inputs, tiny_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU tests run on a GPU machine")]

METHODS = {
    "theseus": lambda: [TheseusConfig(successor_layers=2, steps_for_replacing=2)],
    "movement": lambda: [MovementPruningConfig(pruning_method="topK", final_remaining=0.5, initial_warmup=1,
                                               final_warmup=1)],
    "qat": lambda: [QuantAwareConfig(backend="torch")],
    "sharing": lambda: [WeightSharingConfig(group_size=2)],
    "lowrank": lambda: [LowRankConfig(param_ratio=0.5)],
}


def _rows(n=32):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 120, (10,), generator=generator),
             "attention_mask": torch.ones(10, dtype=torch.long), "labels": torch.tensor(i % 3)} for i in range(n)]


def _args(tmp_path, precision):
    return TrainingArguments(str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=8, report_to=[],
                             save_strategy="no", learning_rate=1e-3, seed=0, **{precision: True})


def _check_reload(model, tmp_path):
    model.eval().save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").cuda().eval()
    inputs = {k: v.cuda() for k, v in tiny_inputs().items()}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("method", list(METHODS))
def test_training_time_methods_run_under_autocast_and_reload(method, precision, tmp_path):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = tiny_model().cuda()
    CompressionTrainer(model=model, args=_args(tmp_path, precision), train_dataset=_rows(),
                       compression=METHODS[method]()).train()
    _check_reload(model, tmp_path)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_iterative_pruning_runs_under_autocast_and_reloads(precision, tmp_path):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = tiny_model().cuda()
    batches = [{k: torch.stack([r[k] for r in _rows()[i:i + 8]]).cuda() for k in ("input_ids", "attention_mask",
                                                                                   "labels")} for i in (0, 8)]
    callback = IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=2),
                                         FFNPruningConfig(target=0.5, iterations=2)], batches, prune_every=2,
                                        reconstruct=True)
    from transformers import Trainer

    Trainer(model=model, args=_args(tmp_path, precision), train_dataset=_rows(), callbacks=[callback]).train()
    _check_reload(model, tmp_path)


def test_int8_on_cuda_says_it_runs_in_float():
    model = compress(tiny_model(), DynamicQuantConfig(backend="torch")).cuda()
    with pytest.warns(UserWarning, match="int8 kernels on CPU only"):
        model(**{k: v.cuda() for k, v in tiny_inputs().items()})


@pytest.mark.parametrize("cpu_step", [{"stage": "compress", "method": "int8_dynamic"},
                                      {"stage": "export", "format": "onnx_int8"}])
def test_a_pipeline_on_cuda_trains_there_and_runs_int8_and_export_on_the_cpu(tmp_path, minilm_path, cpu_step):
    """One stage of each kind with --device cuda: training and pruning on the GPU, int8 or an export on the CPU
    (stage.json says which), and the measurement times the final model and the original on the CPU."""
    import json

    import yaml

    from hfcompress.cli import main
    from hfcompress.data import sample_data_dir

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=4)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "max_seq_length": 32, "max_train_samples": 64, "calibration_batches": 1,
        "training": {"max_steps": 4, "per_device_train_batch_size": 16}, "measure": {"rounds_bs1": 2, "rounds_bs32": 1},
        "stages": [{"stage": "layers", "strategy": "truncate", "layers": 2},
                   {"stage": "train", "methods": [{"method": "movement", "final_remaining": 0.5,
                                                   "initial_warmup": 1, "final_warmup": 1}]},
                   {"stage": "compress", "method": "heads", "target": 0.25}, cpu_step]}))
    out = tmp_path / "out"
    assert main(["compress", "--config", str(recipe), "--model", str(base), "--task", "sst2", "--data_dir",
                 sample_data_dir(), "--output", str(out), "--device", "cuda"]) == 0
    devices = [json.loads((folder / "stage.json").read_text())["device"]
               for folder in sorted((out / "stages").iterdir())]
    assert [d.split(" ")[0] for d in devices] == ["cuda", "cuda", "cuda", "cpu"], devices
    assert [r["device"] for r in json.loads((out / "results.json").read_text())["rows"]] == ["cpu", "cpu"]


def test_benchmark_on_cuda_times_there_and_names_the_device(tmp_path, minilm_path, capsys):
    import json

    from hfcompress.cli import main
    from hfcompress.data import sample_data_dir

    from .test_cli import _save_pair

    _save_pair(tmp_path, minilm_path)
    out = tmp_path / "r.json"
    assert main(["benchmark", str(tmp_path / "base"), str(tmp_path / "pruned"), "--task", "sst2", "--data_dir",
                 sample_data_dir(), "--max_eval_samples", "16", "--repeats", "2", "--device", "cuda",
                 "--output", str(out)]) == 0
    assert "| device |" in capsys.readouterr().out
    assert all(row["device"].startswith("cuda") for row in json.loads(out.read_text())["rows"])
