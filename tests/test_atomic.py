"""Nothing half-written: a save killed midway leaves the previous folder loadable and no partial folder that
passes for a finished one."""

import subprocess
import sys
import warnings

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfcompress import OnnxSequenceClassifier, export_onnx, prune_heads
from hfcompress.atomic import last_complete_checkpoint, replace_files, writing_folder

from .conftest import tiny_inputs, tiny_model

KILLED = -9


def _killed_run(code: str) -> int:
    """Run ``code`` in a fresh interpreter that dies with SIGKILL's status where the code says ``die()``."""
    prelude = "import os, sys\ndef die():\n    sys.stdout.flush(); os._exit(137)\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True).returncode


def test_a_failing_block_leaves_the_previous_folder(tmp_path):
    folder = tmp_path / "out"
    with writing_folder(folder) as partial:
        (partial / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with writing_folder(folder) as partial:
            (partial / "a.txt").write_text("new")
            raise RuntimeError("killed")
    assert (folder / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.subprocess
@pytest.mark.parametrize("kill_at", ["while the weights are written", "before the swap"])
def test_model_save_killed_midway_leaves_the_old_model(tmp_path, kill_at):
    folder = tmp_path / "model"
    old = tiny_model(seed=0)
    with writing_folder(folder) as partial:
        old.save_pretrained(partial)
    expected = old(**tiny_inputs()).logits
    patch = {
        "while the weights are written": (
            "import safetensors.torch as st\n_save = st.save_file\n"
            "def save_file(tensors, filename, *a, **k):\n"
            "    _save(tensors, filename, *a, **k)\n"
            "    data = open(filename, 'rb').read(); open(filename, 'wb').write(data[:len(data) // 2]); die()\n"
            "st.save_file = save_file\n"),
        "before the swap": "import hfcompress.atomic as atomic\natomic.swap_in = lambda *a: die()\n",
    }[kill_at]
    code = (patch + "import torch\nfrom tests.conftest import tiny_model\nfrom hfcompress.atomic import writing_folder\n"
            f"with writing_folder({str(folder)!r}) as partial:\n"
            "    tiny_model(seed=1).save_pretrained(partial)\n")
    assert _killed_run(code) == 137
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=0, rtol=0)
    with writing_folder(folder) as partial:  # the next save cleans up what the killed one left
        tiny_model(seed=1).save_pretrained(partial)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.subprocess
def test_onnx_export_killed_midway_leaves_the_previous_export(tmp_path):
    model = prune_heads(tiny_model(), {0: [1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = export_onnx(model, tmp_path / "onnx", int8=False, optimize=False)
    expected = OnnxSequenceClassifier.from_pretrained(folder)(**tiny_inputs()).logits
    code = ("import torch, warnings\nwarnings.simplefilter('ignore')\n_export = torch.onnx.export\n"
            "def export(*a, **k):\n    _export(*a, **k); die()\ntorch.onnx.export = export\n"
            "from tests.conftest import tiny_model\nfrom hfcompress import export_onnx\n"
            f"export_onnx(tiny_model(seed=3), {str(folder)!r}, int8=True, optimize=False)\n")
    assert _killed_run(code) == 137
    torch.testing.assert_close(OnnxSequenceClassifier.from_pretrained(folder)(**tiny_inputs()).logits, expected,
                               atol=0, rtol=0)
    assert not any(p.name.endswith(".partial") and (p / "config.json").exists() and (p / "model.onnx").exists()
                   for p in tmp_path.iterdir())


@pytest.mark.subprocess
def test_files_copied_into_a_shared_folder_load_only_when_complete(tmp_path):
    source, shared = tmp_path / "new", tmp_path / "shared"
    tiny_model(seed=1).save_pretrained(source)
    tiny_model(seed=0).save_pretrained(shared)
    code = ("import shutil\n_copy = shutil.copy2\ncalls = []\n"
            "def copy2(a, b, **k):\n    calls.append(a)\n    if len(calls) == 2: die()\n    return _copy(a, b, **k)\n"
            "shutil.copy2 = copy2\nfrom hfcompress.atomic import replace_files\n"
            f"replace_files({str(source)!r}, {str(shared)!r})\n")
    assert _killed_run(code) == 137
    with pytest.raises((OSError, ValueError)):  # no config.json: the half-copied folder does not pass for a model
        AutoModelForSequenceClassification.from_pretrained(shared)
    replace_files(source, shared)
    loaded = AutoModelForSequenceClassification.from_pretrained(shared).eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, tiny_model(seed=1)(**tiny_inputs()).logits,
                               atol=0, rtol=0)


def test_resume_takes_the_newest_checkpoint_written_whole(tmp_path):
    for step, files in [(4, {"config.json": "{}", "trainer_state.json": "{}"}),
                        (8, {"config.json": "{}", "trainer_state.json": "{}"}),
                        (12, {"config.json": "", "trainer_state.json": "{}"}),  # killed while writing the config
                        (16, {"config.json": "{}"})]:  # killed before the trainer state
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    checkpoint, skipped = last_complete_checkpoint(tmp_path)
    assert checkpoint == tmp_path / "checkpoint-8"
    assert skipped == [tmp_path / "checkpoint-16", tmp_path / "checkpoint-12"]
    assert last_complete_checkpoint(tmp_path / "checkpoint-4") == (None, [])
