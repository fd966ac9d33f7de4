"""OpenVINO export and runner: every family, shapes left by pruning / truncation / low-rank, float and NNCF int8;
reloads give the same outputs; bad calibration input fails before any work; a missing package names the install."""

import sys
import warnings

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfcompress import (LowRankConfig, OpenVINOExportConfig, OpenVINOSequenceClassifier, TruncationConfig, compress,
                        export_openvino, prune_ffn_neurons, prune_heads)

from .conftest import FAMILIES, tiny_inputs, tiny_model

pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'hfcompress[openvino]' (make does it)")


def _calibration(batches=4, size=8, seed=0, labels=True):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        ids = torch.randint(5, 120, (size, 10), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, -3:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        if labels:
            batch["labels"] = torch.randint(0, 3, (size,), generator=generator)
        out.append(batch)
    return out


def _compressed(family):
    """A tiny model with fewer layers, uneven heads and FFN widths, and low-rank linears, saved and reloaded."""
    model = tiny_model(family, layers=4)
    compress(model, TruncationConfig(layers=3, keep="first"))
    prune_heads(model, {0: [1], 1: [0, 3]})
    prune_ffn_neurons(model, {0: list(range(10)), 2: [1, 2]})
    compress(model, LowRankConfig(param_ratio=0.75))
    return model.eval()


@pytest.mark.parametrize("family", [f if f == "bert" else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES])
def test_every_family_exports_float_and_int8_close_to_torch(family, tmp_path):
    model = _compressed(family)
    model.save_pretrained(tmp_path / "torch")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "torch").eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = loaded(**inputs).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f32 = export_openvino(loaded, tmp_path / "f32", precision="f32")
        int8 = export_openvino(loaded, tmp_path / "int8", int8=True, dataloader=_calibration(), calibration_rows=24)
    runner = OpenVINOSequenceClassifier.from_pretrained(f32)
    assert runner.inference_precision == "f32"
    torch.testing.assert_close(runner(**inputs).logits, expected, atol=1e-4, rtol=0)
    quantized = OpenVINOSequenceClassifier.from_pretrained(int8, precision="f32")(**inputs).logits
    # int8 of a random tiny model: close in scale, not exact
    assert (quantized - expected).abs().max() < 0.1 * expected.abs().max() + 0.05
    # a second load of the same folder gives the same outputs
    again = OpenVINOSequenceClassifier.from_pretrained(int8, precision="f32")(**inputs).logits
    assert torch.equal(quantized, again)


def test_record_states_precision_host_and_calibration(tmp_path):
    import json

    folder = export_openvino(tiny_model(), tmp_path / "ov", OpenVINOExportConfig(int8=True, calibration_rows=16),
                             dataloader=_calibration())
    record = json.loads((folder / "config.json").read_text())["hfcompress_openvino"]
    assert record["int8"] is True and record["calibration_rows_used"] == 16
    assert record["inference_precision_here"] in ("f32", "bf16", "f16")
    assert {"int8_isa", "bf16", "amx"} <= set(record["host"])
    assert (folder / "openvino_model.xml").is_file() and (folder / "openvino_model.bin").is_file()


def test_accuracy_controlled_int8_records_the_measured_drop(tmp_path):
    import json

    folder = export_openvino(tiny_model(), tmp_path / "ov", int8=True, max_drop=1.0, calibration_rows=16,
                             validation_rows=48, dataloader=_calibration(batches=8))
    record = json.loads((folder / "config.json").read_text())["hfcompress_openvino"]
    assert record["max_drop"] == 1.0 and record["held_out_rows"] == 48
    # Judged by default on agreement with the float model: rows a model trained on say nothing through labels.
    assert record["reference"] == "agreement with the float model"
    assert 0 <= record["measured_drop"] <= 100


def test_accuracy_control_on_labels_needs_labelled_rows(tmp_path):
    import json

    folder = export_openvino(tiny_model(), tmp_path / "ov", int8=True, max_drop=1.0, calibration_rows=16,
                             validation_rows=48, reference="labels", dataloader=_calibration(batches=8))
    assert json.loads((folder / "config.json").read_text())["hfcompress_openvino"]["reference"] == "labels"
    unlabelled = _calibration(batches=8, labels=False)
    with pytest.raises(ValueError, match='reference="labels" judges the int8 drop on the rows\' labels'):
        export_openvino(tiny_model(), tmp_path / "ov2", int8=True, max_drop=1.0, calibration_rows=16,
                        reference="labels", dataloader=unlabelled)
    assert not (tmp_path / "ov2").exists()


@pytest.mark.parametrize("loader, message", [
    ([], "got no rows: the dataloader is empty"),
    ([{"sentence": ["a"], "label": [1]}], r"a batch had \['label', 'sentence'\]: tokenize the rows"),
    (None, "OpenVINO int8 calibrates on data: pass dataloader="),
])
def test_bad_calibration_input_fails_before_any_work(tmp_path, loader, message):
    with pytest.raises(ValueError, match=message):
        export_openvino(tiny_model(), tmp_path / "ov", int8=True, dataloader=loader)
    assert not (tmp_path / "ov").exists()


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match=r"precision must be one of \(None, 'f32', 'bf16', 'f16'\); got 'fp32'"):
        OpenVINOExportConfig(precision="fp32")
    with pytest.raises(ValueError, match="max_drop bounds what int8 quantization loses: it needs int8=True"):
        OpenVINOExportConfig(max_drop=1.0)
    with pytest.raises(ValueError, match=r"has no field\(s\) \['calibration_row'\]"):
        OpenVINOExportConfig.from_dict({"calibration_row": 3})


def test_missing_openvino_gives_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'hfcompress\[openvino\]'"):
        export_openvino(tiny_model(), tmp_path / "ov")
    assert not (tmp_path / "ov").exists()


def test_concurrent_calls_give_the_serial_outputs(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    runner = OpenVINOSequenceClassifier.from_pretrained(export_openvino(tiny_model(), tmp_path / "ov", precision="f32"))
    batches = [tiny_inputs(batch=2, seed=s) for s in range(16)]
    serial = [runner(**b).logits for b in batches]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda b: runner(**b).logits, batches))
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


# --- through the pipeline and the CLI ------------------------------------------------------------------------
@pytest.mark.subprocess
def test_pipeline_openvino_int8_stage_resumes_after_a_kill_and_its_card_names_the_runtime(tmp_path, minilm_path, capsys):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    import yaml

    from hfcompress.cli import main
    from hfcompress.data import sample_data_dir

    from .conftest import save_tiny_bert

    root = Path(__file__).resolve().parent.parent
    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=2)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "max_seq_length": 32, "max_train_samples": 64, "calibration_batches": 2, "measure": {"rounds_bs1": 2, "rounds_bs32": 1},
        "stages": [{"stage": "compress", "method": "lowrank", "rank": 4},
                   {"stage": "export", "format": "openvino_int8", "calibration_rows": 48}]}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hfcompress.cli", "compress", "--config", str(recipe), "--model", str(base),
               "--task", "sst2", "--data_dir", sample_data_dir(), "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "stages" / "01-lowrank").is_dir() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "stages" / "01-lowrank").is_dir() and not (out / "stages" / "02-openvino_int8").exists(), \
        "the kill must land inside the export stage"

    capsys.readouterr()
    assert main(command[3:]) == 0  # the resume in this process: only the kill needs another
    printed = capsys.readouterr().out
    assert "stage 1/2" not in printed and "stage 2/2" in printed
    assert "OpenVINOSequenceClassifier.from_pretrained" in printed
    runner = OpenVINOSequenceClassifier.from_pretrained(out)
    torch_model = AutoModelForSequenceClassification.from_pretrained(out / "stages" / "01-lowrank").eval()
    inputs = {"input_ids": torch.randint(1000, 5000, (2, 12), generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        expected = torch_model(**inputs).logits
    assert (runner(**inputs).logits - expected).abs().max() < 0.1 * expected.abs().max() + 0.05
    card = (out / "README.md").read_text()
    assert "Runs on **openvino**: int8" in card and "int8 instructions" in card and "low-rank" in card


def test_cli_exports_and_benchmarks_torch_onnx_and_openvino_folders_in_one_table(tmp_path, minilm_path, capsys):
    from hfcompress.cli import main
    from hfcompress.data import sample_data_dir

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=2)
    data = ["--task", "sst2", "--data_dir", sample_data_dir()]
    assert main(["export", str(base), "--output", str(tmp_path / "onnx"), "--int8"]) == 0
    assert main(["export", str(base), "--openvino", "--int8", "--calibration-rows", "32", "--calibration_batches", "2",
                 "--output", str(tmp_path / "ov"), *data]) == 0
    assert main(["export", str(base), "--openvino", "--weight-bits", "8", "--output", str(tmp_path / "x")]) == 2
    assert "--weight-bits is not an option of openvino exports" in capsys.readouterr().err
    assert main(["benchmark", str(base), str(tmp_path / "onnx"), str(tmp_path / "ov"), *data,
                 "--max_eval_samples", "32", "--repeats", "3"]) == 0
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in ("base", "onnx", "ov"))
    assert main(["evaluate", str(tmp_path / "ov"), *data, "--max_eval_samples", "16"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_without_the_openvino_packages_no_tool_offers_openvino(monkeypatch):
    import importlib.util

    from hfcompress.runtimes import get_runtime, runtimes
    from hfcompress.search import _available_int8

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    assert not get_runtime("openvino").installed()
    assert [spec.name for spec in runtimes(installed=True)] == ["onnxruntime"]
    assert [spec.name for spec in runtimes()] == ["onnxruntime", "openvino"]
    assert _available_int8() == ["none", "torch", "onnxruntime"]
    assert [fmt for spec in runtimes(installed=True) for fmt in spec.int8_formats()] == ["onnx_int8"]


def test_accuracy_control_scores_each_row_against_its_own_target(tmp_path, monkeypatch):
    import nncf
    import openvino

    scores = []

    def ranking_like_nncf(model, calibration, validation, validation_fn, **options):
        # NNCF validates on subsets and single rows, in its own order, while it ranks layers.
        rows = list(validation.get_inference_data())
        compiled = openvino.Core().compile_model(model, "CPU")
        scores.extend([validation_fn(compiled, rows[::-1][:7]), validation_fn(compiled, [rows[-1]])])
        return model

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", ranking_like_nncf)
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)  # predictions that differ between rows, so a row scored against another's target shows
        batches = _calibration(batches=8)
        predicted = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1) for b in batches])
    assert len(set(predicted[16:].tolist())) > 1
    export_openvino(model, tmp_path / "ov", int8=True, max_drop=1.0, calibration_rows=16, validation_rows=48,
                    dataloader=batches)
    assert scores == [1.0, 1.0]  # the float model agrees with itself on any rows in any order
