"""Bad input gets one clear message that names the problem and the fix."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import hfcompress  # noqa: F401
from hfcompress import DynamicQuantConfig, compress, prune_heads
from hfcompress.pipeline import RecipeError, validate_recipe

from .conftest import tiny_model


@pytest.fixture
def pruned_dir(tmp_path):
    prune_heads(tiny_model(), {0: [0, 1]}).save_pretrained(tmp_path / "pruned")
    return tmp_path / "pruned"


def test_truncated_safetensors_names_the_file(pruned_dir):
    weights = pruned_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=r"model\.safetensors cannot be read .*truncated or corrupted.*again"):
        AutoModelForSequenceClassification.from_pretrained(pruned_dir)


def test_weights_that_do_not_match_the_record(pruned_dir):
    config = json.loads((pruned_dir / "config.json").read_text())
    config["quantization_config"]["steps"][0]["shape"]["kept_heads"][0] = [1, 2, 3]
    (pruned_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not have the shapes its config.json \(with the hfcompress record\).*different saves"):
        AutoModelForSequenceClassification.from_pretrained(pruned_dir)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_int8_checkpoint_in_half_precision_is_refused_at_load(tmp_path, dtype):
    compress(tiny_model(), DynamicQuantConfig()).save_pretrained(tmp_path / "int8")
    with pytest.raises(ValueError, match=rf"int8 weights.*dtype={dtype}.*without dtype="):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "int8", dtype=dtype)
    # A float model that was only reshaped still loads in half precision.
    shutil.rmtree(tmp_path / "int8")
    prune_heads(tiny_model(), {0: [0]}).save_pretrained(tmp_path / "pruned")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned", dtype=dtype)
    assert next(model.parameters()).dtype == dtype


@pytest.mark.parametrize("recipe, expected", [
    ({"task": "sst2", "stages": [{"stage": "train", "methods": [], "training": {"lerning_rate": 1e-4}}]},
     "did you mean 'learning_rate'"),
    ({"task": "sst2", "max_train_sample": 10, "stages": [{"stage": "export"}]}, "did you mean 'max_train_samples'"),
    ({"task": "sst2", "stages": [{"stage": "trian", "methods": []}]}, "did you mean 'train'"),
    ({"task": "sst2", "stages": [{"stage": "train", "methods": [{"method": "head"}]}]}, "did you mean 'heads'"),
    ({"task": "sst2", "stages": [{"stage": "train", "methods": [{"method": "heads", "traget": 0.5}]}]},
     "did you mean 'target'"),
])
def test_recipe_typos_name_the_nearest_valid_name(recipe, expected):
    with pytest.raises(RecipeError, match=expected):
        validate_recipe(recipe)


def test_sequence_longer_than_the_positions_fails_before_any_work(tmp_path):
    from hfcompress import run_pipeline
    from hfcompress.data import sample_data_dir

    tiny_model().save_pretrained(tmp_path / "tiny")  # 64 positions
    recipe = {"task": "sst2", "max_seq_length": 100, "stages": [{"stage": "export", "format": "onnx"}]}
    with pytest.raises(RecipeError, match=r"max_seq_length=100 is longer than this model's 64 positions.*<= 64"):
        run_pipeline(recipe, model=str(tmp_path / "tiny"), output=tmp_path / "out", data_dir=sample_data_dir())
    assert not (tmp_path / "out").exists()


def test_roberta_positions_leave_out_the_reserved_ones():
    from hfcompress import get_adapter

    config = tiny_model("roberta").config
    assert get_adapter(config).max_positions(config) == config.max_position_embeddings - 2


def test_no_training_rows_left_is_named(tmp_path, minilm_path):
    from hfcompress import run_pipeline
    from hfcompress.data import sample_data_dir

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=2)
    recipe = {"task": "sst2", "max_train_samples": 1, "holdout": 0.5, "max_seq_length": 16,
              "stages": [{"stage": "train", "methods": [], "training": {"max_steps": 1}}]}
    with pytest.raises(RecipeError, match=r"training split has no rows left.*lower the holdout"):
        run_pipeline(recipe, model=str(base), output=tmp_path / "out", data_dir=sample_data_dir())


def test_importance_needs_labels_and_batches():
    from hfcompress.importance import compute_importance

    model = tiny_model()
    batch = {"input_ids": torch.randint(5, 100, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    with pytest.raises(ValueError, match="must include 'labels'"):
        compute_importance(model, [batch])
    with pytest.raises(ValueError, match="no batches"):
        compute_importance(model, [])
