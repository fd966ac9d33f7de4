import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, TrainingArguments

from hfcompress import TheseusConfig
from hfcompress.data import sample_data_dir
from hfcompress.scripting import TaskArguments, parse_with_recipe

ROOT = Path(__file__).resolve().parent.parent


def _script_module(name: str):
    """scripts/NAME.py imported as a module (its ``main()`` not run)."""
    import importlib.util

    key = f"hfcompress_script_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _demo_module():
    return _script_module("demo")


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("theseus_*.yaml")) + [ROOT / "configs/demo_sst2.yaml"])
def test_recipes_parse(recipe, tmp_path):
    extra = (_demo_module().DemoArguments,) if recipe.name.startswith("demo") else ()
    task_args, theseus, *_, training = parse_with_recipe(
        (TaskArguments, TheseusConfig, *extra, TrainingArguments),
        ["--config", str(recipe), "--model_name_or_path", "m", "--task_name", "sst2", "--output_dir", str(tmp_path)],
    )
    assert isinstance(theseus, TheseusConfig) and theseus.successor_layers >= 1
    assert training.output_dir == str(tmp_path)  # flags override the recipe


@pytest.mark.slow
def test_demo_end_to_end_and_its_suggested_command_runs_as_printed(tmp_path, minilm_path, monkeypatch, capsys):
    """scripts/demo.py (what `make demo` runs) on a tiny model: one table with the teacher and the three
    compressions, a Pareto plot, advice, and a suggested command that exits 0 when run exactly as printed (both
    in this process, from the folder the user would be in; `make demo` itself starts the script)."""
    import shlex

    from hfcompress.cli import main as hfcompress_cli

    _save_tiny(tmp_path / "tiny", minilm_path, layers=4)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        str(ROOT / "scripts/demo.py"), "--config", str(ROOT / "configs/demo_sst2.yaml"),
        "--model_name_or_path", str(tmp_path / "tiny"), "--data_dir", sample_data_dir(), "--max_train_samples", "64",
        "--max_eval_samples", "48", "--max_seq_length", "32", "--teacher_epochs", "1", "--successor_layers", "2",
        "--steps_for_replacing", "2", "--max_steps", "4", "--pipeline_layers", "2", "--pipeline_steps", "3",
        "--per_device_train_batch_size", "16", "--output_dir", str(out), "--benchmark_repeats", "3", "--use_cpu"])
    _demo_module().main()
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 4 and "| teacher (4 layers) |" in table[1]  # the header, then one row per model
    assert "| Theseus 4 -> 2 layers |" in table[2] and "| retraining-free 0.5 FLOPs + " in table[3]
    assert "| 2 layers + KD + " in table[4]
    assert (out / "pareto.png").is_file() and json.loads((out / "results.json").read_text())["rows"][3]["score"] >= 0
    assert "Which to pick:" in printed
    # Each int8 model is the faster of the runtimes installed, by this run's own timing, and the table says which.
    assert "int8 runtime, chosen by timing on this CPU:" in printed
    for row in json.loads((out / "results.json").read_text())["rows"][2:]:
        timings = row["int8_timings_ms"]
        chosen = Path(row["folder"]).name
        assert chosen in ("onnx_int8", "openvino_int8")
        if len(timings) > 1:
            assert timings[chosen] == min(timings.values())
        assert {"onnx_int8": "ONNX Runtime", "openvino_int8": "OpenVINO"}[chosen] in row["name"]
    suggested = [line.strip() for line in printed.splitlines() if line.strip().startswith("hfcompress ")]
    assert suggested
    for command in suggested:
        assert hfcompress_cli(shlex.split(command)[1:]) == 0, command  # `hfcompress` is cli:main (pyproject.toml)


def test_recipe_errors(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        parse_with_recipe((TaskArguments,), ["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("replacing_rate: 1.5\n")
    with pytest.raises(ValueError, match=r"replacing_rate must lie in \(0, 1\]"):
        parse_with_recipe((TaskArguments, TheseusConfig), ["--config", str(bad), "--model_name_or_path", "m",
                                                           "--task_name", "sst2"])


def _save_tiny(folder, minilm_path, layers):
    """A tiny random BERT with the real MiniLM tokenizer: the scripts run end to end in seconds."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=64, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.mark.subprocess
def test_theseus_glue_end_to_end(tmp_path, minilm_path):
    _save_tiny(tmp_path / "tiny", minilm_path, layers=4)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/theseus_glue.py"), "--model_name_or_path", str(tmp_path / "tiny"),
         "--task_name", "sst2", "--data_dir", sample_data_dir(), "--max_train_samples", "64",
         "--max_eval_samples", "32", "--max_seq_length", "32", "--teacher_epochs", "1",
         "--successor_layers", "2", "--replacing_rate", "0.5", "--scheduler_type", "none",
         "--steps_for_replacing", "2", "--max_steps", "4", "--per_device_train_batch_size", "16",
         "--output_dir", str(out), "--report_to", "none", "--save_strategy", "no", "--benchmark_repeats", "2",
         "--use_cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| theseus (2 layers) |" in result.stdout and "| predecessor (4 layers) |" in result.stdout
    payload = json.loads((out / "results.json").read_text())
    assert payload["train_rows"] == 64 and payload["dev_rows"] == 32
    assert payload["rows"][1]["params"] < payload["rows"][0]["params"]
    successor = AutoModelForSequenceClassification.from_pretrained(out / "successor")
    assert successor.config.num_hidden_layers == 2
    # The demo's contract: no optimizer state left behind, the table names the metric, the last line says where.
    assert not list(out.rglob("optimizer.pt")) and not list(out.rglob("checkpoint-*"))
    assert "| model | accuracy |" in (out / "results.md").read_text()
    noise = ("Writing model shards", "Loading weights", "LOAD REPORT", "pin_memory", "\x1b[")
    assert not [n for n in noise if n in result.stdout + result.stderr], result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Produced {out / 'successor'}") and "hfcompress benchmark" in last


@pytest.mark.slow
@pytest.mark.parametrize("method_flags, ran, steps", [
    (["--method", "heads", "--target", "0.5"], "heads", ["heads"]),
    (["--method", "movement", "--pruning_method", "topK", "--final_remaining", "0.5", "--initial_warmup", "0", "--scores_init", "magnitude",
      "--distill", "--distill_hidden_weight", "1"], "topK", ["movement"]),
    (["--config", str(ROOT / "configs/movement_soft_finetuned.yaml"), "--eval_strategy", "no"], "sigmoied_threshold",
     ["movement", "sparse_storage"])])
def test_prune_glue_end_to_end(tmp_path, minilm_path, method_flags, ran, steps, monkeypatch):
    _save_tiny(tmp_path / "tiny", minilm_path, layers=2)
    out = tmp_path / "out"
    # In this process (as `python scripts/prune_glue.py ...` would run it): the script's own process start is
    # covered by the old-spelling test below.
    monkeypatch.setattr(sys, "argv", [
        str(ROOT / "scripts/prune_glue.py"), *method_flags, "--model_name_or_path", str(tmp_path / "tiny"),
        "--task_name", "sst2", "--data_dir", sample_data_dir(), "--max_train_samples", "64", "--max_eval_samples", "32",
        "--max_seq_length", "32", "--max_steps", "3", "--per_device_train_batch_size", "16", "--output_dir", str(out),
        "--report_to", "none", "--save_strategy", "no", "--benchmark_repeats", "2", "--use_cpu"])
    _script_module("prune_glue").main()
    payload = json.loads((out / "results.json").read_text())
    assert payload["rows"][1]["name"] == f"pruned ({ran})"
    pruned = AutoModelForSequenceClassification.from_pretrained(out / "pruned")
    methods = [s["method"] for s in pruned.config.quantization_config.steps]
    assert methods == steps
    assert (out / "pruned" / "README.md").is_file()


def test_movement_recipe_parses(tmp_path):
    from hfcompress import MovementPruningConfig

    _, config, training = parse_with_recipe(
        (TaskArguments, MovementPruningConfig, TrainingArguments),
        ["--config", str(ROOT / "configs/movement_glue.yaml"), "--model_name_or_path", "m", "--task_name", "sst2",
         "--output_dir", str(tmp_path)], skip=("method",))
    assert config.method == "movement" and config.pruning_method == "topK" and config.final_remaining == 0.1 and training.num_train_epochs == 10


def test_soft_movement_recipe_parses(tmp_path):
    from hfcompress import MovementPruningConfig

    _, config, _ = parse_with_recipe(
        (TaskArguments, MovementPruningConfig, TrainingArguments),
        ["--config", str(ROOT / "configs/movement_soft_glue.yaml"), "--model_name_or_path", "m", "--task_name",
         "sst2", "--output_dir", str(tmp_path)], skip=("method",))
    assert config.pruning_method == "sigmoied_threshold" and config.target_remaining and config.sparse_storage


def test_finetuned_soft_movement_recipe_parses_with_distillation(tmp_path):
    from hfcompress import MovementPruningConfig
    from hfcompress.scripting import DistillArguments

    _, config, distill, training = parse_with_recipe(
        (TaskArguments, MovementPruningConfig, DistillArguments, TrainingArguments),
        ["--config", str(ROOT / "configs/movement_soft_finetuned.yaml"), "--model_name_or_path", "m", "--task_name",
         "sst2", "--output_dir", str(tmp_path)], skip=("method",))
    assert config.scores_init == "magnitude" and config.pruning_method == "sigmoied_threshold" and config.target_remaining
    assert distill.distill is True and training.learning_rate == 5e-5 and training.num_train_epochs == 8


@pytest.mark.subprocess
def test_prune_glue_old_method_spelling_still_runs_with_a_warning(tmp_path, minilm_path):
    """--method topK (the last release's spelling) maps to --method movement --pruning_method topK."""
    _save_tiny(tmp_path / "tiny", minilm_path, layers=2)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/prune_glue.py"), "--method", "magnitude", "--final_remaining", "0.5",
         "--model_name_or_path", str(tmp_path / "tiny"), "--task_name", "sst2", "--data_dir", sample_data_dir(),
         "--max_train_samples", "32", "--max_eval_samples", "16", "--max_seq_length", "16", "--max_steps", "1",
         "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--save_strategy", "no",
         "--benchmark_repeats", "1", "--use_cpu"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--method movement --pruning_method magnitude" in result.stderr
