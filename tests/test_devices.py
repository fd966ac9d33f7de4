"""Devices: what a run asks for is checked before any work; every stage and measured row says where it ran."""

import json

import pytest
import torch

from hfcompress.cli import main
from hfcompress.devices import resolve_device, training_arguments

from .test_pipeline import _cli, _recipe, tiny_base  # noqa: F401  (fixture)


def test_a_device_this_machine_lacks_or_does_not_know_is_refused_with_the_fix():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="is not a device: give one of auto, cpu, cuda"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="trains on the CPU or on CUDA"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device .* give --device cpu"):
            resolve_device("cuda")
    else:
        with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=1"):
            resolve_device("cuda:1")


def test_training_on_the_cpu_says_so_and_a_gpu_gets_bf16_unless_the_recipe_chose():
    assert training_arguments(torch.device("cpu"), {"bf16": True}) == {"use_cpu": True}
    if torch.cuda.is_available():
        assert training_arguments(torch.device("cuda"), {"fp16": True}) == {}
        assert training_arguments(torch.device("cuda"), {}) == ({"bf16": True} if torch.cuda.is_bf16_supported()
                                                                 else {})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_compress_on_a_missing_gpu_fails_before_any_work_with_one_line(tmp_path, tiny_base, capsys):  # noqa: F811
    recipe = _recipe(tmp_path, [{"stage": "layers", "strategy": "truncate", "layers": 2}])
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out, "--device", "cuda")) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "torch sees no CUDA device" in said[0] and "--device cpu" in said[0]
    assert not out.exists()


def test_every_stage_and_measured_row_names_its_device(tmp_path, tiny_base):  # noqa: F811
    recipe = _recipe(tmp_path, [{"stage": "layers", "strategy": "truncate", "layers": 2},
                                {"stage": "compress", "method": "int8_dynamic"}], device="cpu")
    out = tmp_path / "out"
    assert main(_cli(recipe, tiny_base, out)) == 0
    for stage in ("01-truncate2", "02-int8_dynamic"):
        assert json.loads((out / "stages" / stage / "stage.json").read_text())["device"] == "cpu"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["device"] for r in rows] == ["cpu", "cpu"]
