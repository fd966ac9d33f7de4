"""Staged recipes through the CLI: run, reload, continue after a kill, refuse bad recipes before any work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification

from hfcompress import OnnxSequenceClassifier
from hfcompress.cli import main
from hfcompress.data import sample_data_dir
from hfcompress.pipeline import RecipeError, load_recipe, validate_recipe

from .conftest import save_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_base(tmp_path, minilm_path):
    return save_tiny_bert(tmp_path / "base", minilm_path, layers=4)


def _recipe(tmp_path, stages, **extra):
    recipe = {"max_seq_length": 32, "max_train_samples": 64, "calibration_batches": 1, "seed": 3,
              "training": {"max_steps": 4, "per_device_train_batch_size": 16, "save_steps": 2, "use_cpu": True},
              "measure": {"rounds_bs1": 2, "rounds_bs32": 1}, "stages": stages, **extra}
    path = tmp_path / f"recipe{len(list(tmp_path.glob('recipe*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _cli(recipe, base, out, *more):
    return ["compress", "--config", str(recipe), "--model", str(base), "--task", "sst2", "--data_dir",
            sample_data_dir(), "--output", str(out), *more]


def _inputs():
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(1000, 5000, (3, 12), generator=generator),
            "attention_mask": torch.ones(3, 12, dtype=torch.long),
            "token_type_ids": torch.zeros(3, 12, dtype=torch.long)}


def test_three_stages_train_compress_export_reload(tmp_path, tiny_base, capsys):
    recipe = _recipe(tmp_path, [{"stage": "layers", "strategy": "truncate", "layers": 2},
                                {"stage": "compress", "method": "lowrank", "rank": 4},
                                {"stage": "export", "format": "onnx"}])
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out)) == 0
    printed = capsys.readouterr().out
    assert "| original |" in printed and "| compressed |" in printed and str(out) in printed
    stages = sorted(p.name for p in (out / "stages").iterdir())
    assert stages == ["01-truncate2", "02-lowrank", "03-onnx"]
    torch_model = AutoModelForSequenceClassification.from_pretrained(out / "stages" / "02-lowrank").eval()
    assert torch_model.config.num_hidden_layers == 2
    assert [s["method"] for s in torch_model.config.quantization_config.steps] == ["truncation", "lowrank"]
    onnx_model = OnnxSequenceClassifier.from_pretrained(out)
    with torch.no_grad():
        expected = torch_model(**_inputs()).logits
    torch.testing.assert_close(torch.as_tensor(onnx_model(**_inputs()).logits), expected, atol=1e-4, rtol=1e-4)
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["original", "compressed"]
    assert [s["stage"] for s in results["stages"]] == ["layers", "compress", "export"]
    card = (out / "README.md").read_text()
    assert "How it was made" in card and "layer truncation" in card and "OnnxSequenceClassifier" in card
    assert yaml.safe_load((out / "recipe.yaml").read_text())["stages"][0]["strategy"] == "truncate"
    assert not (out / "work").exists()


def test_torch_pipeline_reloads_with_identical_logits(tmp_path, tiny_base):
    recipe = _recipe(tmp_path, [{"stage": "train", "methods": [{"method": "heads", "target": 0.25},
                                                               {"method": "ffn", "target": 0.5}],
                                 "distillation": {"teacher": "original", "alpha": 0.5}},
                                {"stage": "compress", "method": "int8_dynamic", "weight_bits": 7}])
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out, "--no-measure")) == 0
    final = AutoModelForSequenceClassification.from_pretrained(out)
    stage = AutoModelForSequenceClassification.from_pretrained(out / "stages" / "02-int8_dynamic")
    assert [s["method"] for s in final.config.quantization_config.steps] == ["heads", "ffn", "int8_dynamic"]
    with torch.no_grad():
        assert torch.equal(final(**_inputs()).logits, stage(**_inputs()).logits)


def test_iterative_stage_with_reconstruction_runs_and_states_it(tmp_path, tiny_base):
    recipe = _recipe(tmp_path, [{"stage": "train", "methods": [{"method": "heads", "target": 0.5, "iterations": 2},
                                                               {"method": "ffn", "target": 0.5, "iterations": 2}],
                                 "iterative": {"prune_every": 2, "reconstruct": True},
                                 "training": {"max_steps": 4}}])
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out, "--no-measure")) == 0
    final = AutoModelForSequenceClassification.from_pretrained(out)
    steps = final.config.quantization_config.steps
    assert [s["method"] for s in steps] == ["heads", "ffn", "heads", "ffn"]
    assert all("reconstruction_error" in steps[i]["info"] for i in (1, 3))  # after each round's last removal
    assert "output projections refitted" in (out / "README.md").read_text()


_KILL_STAGES = [{"stage": "layers", "strategy": "truncate", "layers": 2, "training": {"max_steps": 2}},
                {"stage": "train", "methods": [{"method": "sharing", "group_size": 2}],
                 "training": {"max_steps": 60, "save_steps": 10}},
                {"stage": "compress", "method": "heads", "target": 0.25}]


_ITERATIVE_STAGE = {"stage": "train", "methods": [{"method": "heads", "target": 0.5, "iterations": 2},
                                                  {"method": "ffn", "target": 0.5, "iterations": 2}],
                    "iterative": {"prune_every": 10}, "training": {"max_steps": 60, "save_steps": 10}}


@pytest.mark.subprocess
@pytest.mark.parametrize("second", ["sharing", "iterative"])
def test_killed_run_continues_after_the_last_finished_stage(tmp_path, tiny_base, second, capsys):
    # An iterative stage killed after its first round resumes with the pruned structure, like any other.
    stages = _KILL_STAGES if second == "sharing" else [_KILL_STAGES[0], _ITERATIVE_STAGE, _KILL_STAGES[2]]
    recipe = _recipe(tmp_path, stages)
    reference = tmp_path / "reference"
    assert main(_cli(recipe, tiny_base, reference, "--no-measure")) == 0

    out = tmp_path / "out"
    command = [sys.executable, "-m", "hfcompress.cli", *_cli(recipe, tiny_base, out, "--no-measure")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 300
    stage_two = "02-train-sharing" if second == "sharing" else "02-train-heads-ffn"
    work = out / "work" / stage_two
    # Kill as soon as one checkpoint is complete (the Trainer writes trainer_state.json last).
    while time.time() < deadline and not list(work.glob("checkpoint-*/trainer_state.json")) \
            and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "stages" / "01-truncate2").is_dir() and not (out / "stages" / stage_two).exists(), \
        "the kill must land inside stage 2"
    first = (out / "stages" / "01-truncate2" / "model.safetensors").stat().st_mtime_ns

    capsys.readouterr()
    assert main(_cli(recipe, tiny_base, out, "--no-measure")) == 0  # the resume in this process: only the kill needs another
    printed = capsys.readouterr().out
    assert "stage 1/3" not in printed and "stage 2/3" in printed  # stage 1 was not run again
    assert (out / "stages" / "01-truncate2" / "model.safetensors").stat().st_mtime_ns == first
    resumed = AutoModelForSequenceClassification.from_pretrained(out)
    expected = AutoModelForSequenceClassification.from_pretrained(reference)
    with torch.no_grad():
        torch.testing.assert_close(resumed(**_inputs()).logits, expected(**_inputs()).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stages, message", [
    ([{"stage": "distil"}], "stage 1: unknown stage 'distil'"),
    ([{"stage": "compress", "method": "lowrank", "rank": 4, "learning_rate": 1e-4}],
     r"stage 1 \(compress\): \['learning_rate'\] are training settings"),
    ([{"stage": "compress", "method": "lowrank", "rank": 4, "training": {"max_steps": 3}}],
     r"stage 1 \(compress\): \['training'\] are training settings"),
    ([{"stage": "compress", "method": "int8_dynamic"}, {"stage": "train", "methods": [{"method": "heads"}]}],
     "comes before training stage 2: int8 models do not train"),
    ([{"stage": "export"}, {"stage": "compress", "method": "lowrank", "rank": 4}], "must be the last stage"),
    ([{"stage": "train", "methods": [{"method": "pruning"}]}], "unknown method 'pruning'"),
    ([{"stage": "compress", "method": "heads", "target": 2}], r"target .* must lie in \(0, 1\); got 2"),
    ([{"stage": "layers", "strategy": "distill"}], "strategy must be one of"),
    ([{"stage": "train", "methods": [], "training": {"max_stepz": 3}}], "not TrainingArguments fields"),
    ([{"stage": "train", "methods": [{"method": "heads"}], "iterative": {"prune_every": 2, "refit": True}}],
     "iterative takes prune_every .* and reconstruct"),
    ([{"stage": "train", "methods": [{"method": "lowrank", "rank": 4}], "iterative": {"prune_every": 2}}],
     r"its methods must be among \['ffn', 'heads'\]"),
    ([{"stage": "compress", "method": "heads", "target": 0.5}, {"stage": "layers", "layers": 2}],
     r"stage 2 \(truncate2\) changes the layer count after stage 1 \(heads\)"),
    ([{"stage": "layers", "strategy": "theseus", "keep": "first"}], r"unknown key\(s\) \['keep'\]"),
    ([{"stage": "train", "methods": [{"method": "vocabulary"}]}], "changes the tokenizer; put it in a compress stage"),
])
def test_bad_recipes_fail_before_any_work_with_one_line(tmp_path, tiny_base, capsys, stages, message):
    recipe = _recipe(tmp_path, stages)
    out = tmp_path / "never"
    assert main(_cli(recipe, tiny_base, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hfcompress compress:")
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_earlier_steps_recipes_still_run_and_validate():
    recipe = load_recipe({"task": "sst2", "importance_batches": 2, "steps": [{"method": "heads", "target": 0.25}]})
    stages = validate_recipe(recipe)
    assert [s.kind for s in stages] == ["compress"] and recipe["calibration_batches"] == 2
    with pytest.raises(RecipeError, match="both `steps` and `stages`"):
        load_recipe({"steps": [], "stages": []})


def test_shipped_pipeline_recipes_validate():
    for path in sorted((ROOT / "configs").glob("pipeline_*.yaml")):
        validate_recipe(load_recipe(path))


def test_vocabulary_stage_prunes_the_tokenizer_and_later_stages_use_it(tmp_path, tiny_base, capsys):
    # A recipe stage gets the tokenizer and the training texts; the fine-tune after it and the final measurement
    # tokenize with the pruned tokenizer, and the output folder holds both.
    from transformers import AutoTokenizer

    recipe = _recipe(tmp_path, [{"stage": "compress", "method": "vocabulary"},
                                {"stage": "train", "methods": []}])
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out)) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert len(tokenizer) == model.config.vocab_size < AutoTokenizer.from_pretrained(tiny_base).vocab_size
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["original", "compressed"]
    assert results["stages"][0]["methods"][0]["method"] == "vocabulary"
    with torch.no_grad():
        model(**tokenizer(["a fine, moving film"], return_tensors="pt"))


def test_a_second_pipeline_on_the_same_output_refuses_with_one_line(tmp_path, tiny_base, capsys):
    from hfcompress.pipeline import output_lock

    out = tmp_path / "out"
    out.mkdir()
    recipe = _recipe(tmp_path, [{"stage": "compress", "method": "int8_dynamic"}])
    with output_lock(out):  # a first run, still writing
        assert main(_cli(recipe, tiny_base, out, "--no-measure")) == 2
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hfcompress compress:")]
        assert len(said) == 1 and "another hfcompress run is writing to" in said[0]
        assert not (out / "stages").exists()
    assert main(_cli(recipe, tiny_base, out, "--no-measure")) == 0  # free again once the first one is done
