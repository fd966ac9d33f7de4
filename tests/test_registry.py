"""The method registry: a new method plugs in with one register_method call; callbacks behave the same in a
plain Trainer and in CompressionTrainer."""

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import hfcompress
from hfcompress import (CompressCallback, CompressionTrainer, DynamicQuantCallback, DynamicQuantConfig,
                        FFNPruningConfig, HeadPruningConfig, IterativePruningCallback, MethodConfig, MethodSpec,
                        MovementPruningCallback, MovementPruningConfig, TheseusCallback, TheseusConfig,
                        WeightSharingConfig, compress, get_record, register_method)
from hfcompress import registry
from hfcompress.hub import build_model_card
from hfcompress.integration import append_step, make_step
from hfcompress.method_config import check_range
from hfcompress.structure import replace_submodule

from .conftest import tiny_inputs, tiny_model


# --- a toy method, defined here and nowhere else ---------------------------------------------------------
class ScaledClassifier(nn.Module):
    """The classifier followed by a learned per-class scale (a module a fresh model does not have)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.scale = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, x):
        return self.linear(x) * self.scale


@dataclass
class ToyScaleConfig(MethodConfig):
    name: ClassVar[str] = "toy_scale"
    factor: float = field(default=2.0)

    def __post_init__(self):
        check_range("factor", self.factor, 0, low_open=True)


def _apply_toy(model, config, dataloader=None):
    scaled = ScaledClassifier(model.classifier)
    with torch.no_grad():
        scaled.scale.fill_(config.factor)
    replace_submodule(model, "classifier", scaled)
    append_step(model, make_step(config.name, config, {"module": "classifier"}))
    return model


def _rebuild_toy(model, step):
    replace_submodule(model, step["shape"]["module"], ScaledClassifier(model.get_submodule(step["shape"]["module"])))


@pytest.fixture
def toy_method():
    spec = register_method(MethodSpec(name="toy_scale", config_cls=ToyScaleConfig, title="toy classifier scaling",
                                      tag="toy", apply=_apply_toy, rebuild=_rebuild_toy, shape_keys=("module",),
                                      describe=lambda step: {"scaled module": step["shape"]["module"]}))
    yield spec
    registry._METHODS.pop("toy_scale")


def test_a_method_registered_elsewhere_works_through_compress_record_and_card(toy_method, tmp_path):
    model = tiny_model("bert")
    compress(model, ToyScaleConfig(factor=3.0))
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-6, rtol=0)
    step = get_record(loaded).steps[0]
    assert step == {"method": "toy_scale", "config": {"factor": 3.0}, "shape": {"module": "classifier"}, "info": {}}
    card = str(build_model_card(tmp_path))
    assert "toy classifier scaling" in card and "`factor`=3.0" in card and "`scaled module`=classifier" in card
    assert "- toy" in card  # the tag
    # CompressionTrainer takes it too (a post-training config: compress, then fine-tune).
    trainer = CompressionTrainer(model=tiny_model("bert"), args=TrainingArguments(str(tmp_path / "t"), report_to=[],
                                                                                  use_cpu=True),
                                 compression=[ToyScaleConfig()])
    assert isinstance(trainer.model.classifier, ScaledClassifier)


def test_unknown_config_and_config_errors_name_the_field():
    with pytest.raises(TypeError, match="post-training configs: .*HeadPruningConfig"):
        compress(tiny_model("bert"), object())
    with pytest.raises(ValueError, match=r"target \(fraction of attention heads to remove\) must lie in \(0, 1\); "
                                         r"got 1.5"):
        HeadPruningConfig(target=1.5)
    with pytest.raises(ValueError, match="has no field"):
        hfcompress.registry.config_from_dict("heads", {"target": 0.5, "ratio": 2})
    assert registry.config_from_dict("ffn", {"target": 0.25}) == FFNPruningConfig(target=0.25)
    assert HeadPruningConfig().method == "heads" and HeadPruningConfig().to_dict() == {
        "target": 0.5, "scope": "global", "iterations": 1, "max_batches": None}


def test_movement_method_argument_is_deprecated_but_works():
    with pytest.warns(FutureWarning, match="pruning_method"):
        config = MovementPruningConfig(method="magnitude")
    assert config.pruning_method == "magnitude" and config.method == "movement"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MovementPruningConfig(pruning_method="topK").method == "movement"
    assert "method" not in MovementPruningConfig().to_dict()


def test_append_step_refuses_other_shapes_and_unknown_methods():
    with pytest.raises(ValueError, match="make_step"):
        append_step(tiny_model("bert"), {"method": "heads", "kept_heads": [[0]]})
    with pytest.raises(ValueError, match="Unknown compression method 'nope'"):
        append_step(tiny_model("bert"), make_step("nope"))


def test_a_record_from_a_newer_release_says_upgrade():
    with pytest.raises(ValueError, match="format_version=3.*Upgrade hfcompress"):
        hfcompress.HfCompressConfig(steps=[], format_version=3)


# --- plain Trainer vs CompressionTrainer --------------------------------------------------------------------
def _rows(n=32):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 120, (10,), generator=generator),
             "attention_mask": torch.ones(10, dtype=torch.long), "labels": torch.tensor(i % 3)} for i in range(n)]


def _args(tmp_path, name):
    return TrainingArguments(str(tmp_path / name), max_steps=6, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3, seed=0, logging_strategy="no")


def _loader():
    return DataLoader(_rows(16), batch_size=8, collate_fn=lambda rows: {k: torch.stack([r[k] for r in rows])
                                                                         for k in rows[0]})


def _train(trainer_cls, tmp_path, name, **kwargs):
    model = tiny_model("bert", seed=5).train()
    trainer = trainer_cls(model=model, args=_args(tmp_path, name), train_dataset=_rows(), **kwargs)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, trainer.model


CASES = {
    "theseus": lambda: TheseusCallback(TheseusConfig(successor_layers=2, steps_for_replacing=3)),
    "movement_topK": lambda: MovementPruningCallback(MovementPruningConfig(
        pruning_method="topK", final_remaining=0.5, initial_warmup=0, final_warmup=0, scores_init="magnitude")),
    "movement_soft_l1": lambda: MovementPruningCallback(MovementPruningConfig(
        pruning_method="sigmoied_threshold", target_remaining=True, final_remaining=0.5, regularization_lambda=5.0,
        initial_warmup=0, final_warmup=0, scores_init="magnitude")),
    "movement_heads": lambda: MovementPruningCallback(MovementPruningConfig(
        pruning_method="magnitude", granularity="head", targets=["attention"], final_remaining=0.5,
        initial_warmup=0, final_warmup=0)),
    "iterative_heads_ffn": lambda: IterativePruningCallback(
        [HeadPruningConfig(target=0.5, iterations=2), FFNPruningConfig(target=0.5, iterations=2)], _loader(),
        prune_every=3),
    "compress_sharing": lambda: CompressCallback(WeightSharingConfig(group_size=2)),
    "int8_at_end": lambda: DynamicQuantCallback(DynamicQuantConfig()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_callback_does_the_same_in_a_plain_trainer(case, tmp_path):
    plain, plain_model = _train(Trainer, tmp_path, "plain", callbacks=[CASES[case]()])
    ours, ours_model = _train(CompressionTrainer, tmp_path, "ours", callbacks=[CASES[case]()])
    assert plain.keys() == ours.keys()
    for key in plain:
        assert torch.equal(plain[key], ours[key]), key
    assert get_record(plain_model).steps == get_record(ours_model).steps
    assert not torch.equal(plain["classifier.bias"], tiny_model("bert", seed=5).classifier.bias)  # it trained


def test_soft_movement_penalty_reaches_the_scores_in_a_plain_trainer(tmp_path):
    """The L1 term must change training in a plain Trainer (it was silently dropped there before)."""
    # Scores are folded away at the end; compare the trained weights instead, which the mask shaped.
    def weights(lam):
        callback = MovementPruningCallback(MovementPruningConfig(
            pruning_method="sigmoied_threshold", target_remaining=True, final_remaining=0.5, regularization_lambda=lam,
            initial_warmup=0, final_warmup=0, scores_init="magnitude", scores_learning_rate=0.5))
        model = tiny_model("bert", seed=5).train()
        Trainer(model=model, args=_args(tmp_path, f"w{lam}"), train_dataset=_rows(), callbacks=[callback]).train()
        return model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()

    assert not torch.equal(weights(0.0), weights(50.0))


def test_regularization_gradient_equals_the_loss_term():
    """The gradient route adds exactly d/dS of weight * mean over layers of mean(sigmoid(S))."""
    config = MovementPruningConfig(pruning_method="sigmoied_threshold", regularization_lambda=200.0,
                                   initial_warmup=0, final_warmup=0, scores_init="magnitude")
    model = tiny_model("bert", seed=1).train()
    callback = MovementPruningCallback(config)
    hfcompress.methods.movement.attach_masks(model, config)
    callback.total_steps = 10
    callback._set_values(model, 5)
    inputs = {**tiny_inputs(), "labels": torch.tensor([0, 1, 2])}
    model(**inputs).loss.backward()
    with_hook = [p.grad.clone() for n, p in model.named_parameters() if n.endswith("mask_scores")]
    model.zero_grad()
    for layer in model.modules():
        if hasattr(layer, "regularization_scale"):
            layer.regularization_scale = 0.0
    (model(**inputs).loss + callback.regularization(model, 5)).backward()
    with_loss = [p.grad.clone() for n, p in model.named_parameters() if n.endswith("mask_scores")]
    for a, b in zip(with_hook, with_loss):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-4)
    model.zero_grad()
    model(**inputs).loss.backward()
    without = [p.grad.clone() for n, p in model.named_parameters() if n.endswith("mask_scores")]
    assert max(float((a - b).abs().max()) for a, b in zip(with_hook, without)) > 1e-4  # the penalty is there
    assert callback.regularization(model, 5) is not None


# --- the same toy through a recipe, and the registry's guards ------------------------------------------------
def test_a_method_registered_elsewhere_runs_in_a_recipe_and_reloads(toy_method, tmp_path, minilm_path):
    from hfcompress import run_pipeline

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=2)
    result = run_pipeline({"stages": [{"stage": "compress", "method": "toy_scale", "factor": 3.0}]},
                          model=str(base), output=tmp_path / "out", measure=False)
    loaded = AutoModelForSequenceClassification.from_pretrained(result.output).eval()
    reference = AutoModelForSequenceClassification.from_pretrained(base).eval()
    inputs = {"input_ids": torch.randint(1000, 2000, (2, 8), generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, 3.0 * reference(**inputs).logits, atol=1e-5, rtol=1e-5)
    assert result.stages[0]["methods"] == [{"method": "toy_scale", "factor": 3.0}]


def test_a_second_method_under_a_taken_name_is_refused(toy_method):
    register_method(toy_method)  # the same method again (a reloaded module) is fine
    with pytest.raises(ValueError, match="'toy_scale' is already registered .*another name"):
        register_method(MethodSpec(name="toy_scale", config_cls=ToyScaleConfig, title="another toy",
                                   apply=lambda model, config, dataloader=None: model))
    with pytest.raises(ValueError, match="strategy 'truncate' is already 'truncation'"):
        register_method(MethodSpec(name="toy_scale", config_cls=ToyScaleConfig, title="toy", apply=_apply_toy,
                                   rebuild=_rebuild_toy, describe=toy_method.describe, shape_keys=("module",),
                                   layer_stage=registry.LayerStage("truncate", build=lambda n, s: None)))


def test_capabilities_are_declared_not_inferred():
    capabilities = {spec.name: spec.capabilities() for spec in registry.methods()}
    assert capabilities["vocabulary"]["needs_tokenizer"] and capabilities["vocabulary"]["post_training"]
    assert capabilities["truncation"]["changes_layer_count"] and capabilities["theseus"]["changes_layer_count"]
    assert capabilities["heads"]["prunes_units"] and not capabilities["lowrank"]["prunes_units"]
    assert capabilities["int8_dynamic"]["runtime_int8"]
    assert set(registry.layer_strategies()) >= {"truncate", "theseus"}
    # QAT leaves int8 modules only when it converts to torch's at the end.
    assert registry.leaves_int8(hfcompress.QuantAwareConfig(backend="torch"))
    assert not registry.leaves_int8(hfcompress.QuantAwareConfig(backend="onnxruntime"))
    # A tokenizer-changing method is refused by compress() with the call to use, before any change.
    with pytest.raises(ValueError, match=r"rewrites the tokenizer.*hfcompress.prune_vocabulary"):
        compress(tiny_model("bert"), hfcompress.VocabularyPruningConfig())


def test_every_method_folder_registers_itself():
    from pathlib import Path

    folders = {p.name for p in (Path(hfcompress.__file__).parent / "methods").iterdir()
               if (p / "__init__.py").is_file()}
    registered_from = {spec.config_cls.__module__.split(".")[2] for spec in registry.methods() if spec.config_cls}
    assert folders == registered_from
