import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from hfcompress import CompressionTrainer, MovementPruningCallback, MovementPruningConfig, get_adapter, get_record
from hfcompress.methods.movement import (
    MaskedLinear,
    SparseStoredLinear,
    attach_masks,
    schedule_value,
    score_parameters,
    store_sparse,
)
from hfcompress.methods.movement.layers import pack_bits, unpack_bits

from .conftest import tiny_inputs, tiny_model


def _rows(n=48):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 120, (10,), generator=generator),
             "attention_mask": torch.ones(10, dtype=torch.long), "labels": torch.tensor(i % 3)} for i in range(n)]


def _args(tmp_path, **kwargs):
    base = dict(max_steps=10, per_device_train_batch_size=8, report_to=[], use_cpu=True, save_strategy="no",
                learning_rate=1e-3, seed=0)
    return TrainingArguments(str(tmp_path / "run"), **{**base, **kwargs})


def test_cubic_schedule():
    config = MovementPruningConfig(final_remaining=0.1, initial_warmup=10, final_warmup=20)
    assert schedule_value(config, 0, 100) == 1.0 and schedule_value(config, 9, 100) == 1.0
    assert schedule_value(config, 45, 100) == pytest.approx(0.1 + 0.9 * 0.5**3)
    assert schedule_value(config, 80, 100) == 0.1 and schedule_value(config, 99, 100) == 0.1
    fractions = MovementPruningConfig(final_remaining=0.03, initial_warmup=0.1, final_warmup=0.2)
    assert schedule_value(fractions, 800, 1000) == 0.03 and schedule_value(fractions, 99, 1000) == 1.0


@pytest.mark.parametrize("granularity,remaining", [("element", 0.25), ("row", 0.5)])
def test_mask_sparsity_exactly_as_scheduled(granularity, remaining):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="magnitude", granularity=granularity, targets=["ffn"])
    layers = attach_masks(model, config)
    for layer in layers:
        layer.value = remaining
        mask = layer.mask()
        assert mask.shape == layer.weight.shape
        assert mask.mean().item() == pytest.approx(remaining, abs=1 / layer.weight.shape[0])


def test_magnitude_matches_abs_weight_ranking():
    model = tiny_model("bert")
    layer = attach_masks(model, MovementPruningConfig(pruning_method="magnitude", targets=["ffn"]))[0]
    layer.value = 0.1
    mask = layer.mask().bool()
    weights = layer.weight.detach().abs()
    assert weights[mask].min() >= weights[~mask].max()


@pytest.mark.parametrize("granularity", ["element", "row"])
def test_magnitude_scores_init_starts_from_the_magnitude_mask(granularity):
    magnitude = attach_masks(tiny_model("bert"), MovementPruningConfig(pruning_method="magnitude", granularity=granularity))
    movement = attach_masks(tiny_model("bert"), MovementPruningConfig(pruning_method="topK", granularity=granularity,
                                                                      scores_init="magnitude"))
    for a, b in zip(magnitude, movement):
        a.value = b.value = 0.3
        assert torch.equal(a.mask(), b.mask())
        assert b.mask_scores.requires_grad and b.mask_scores.mean().item() == pytest.approx(1.0, rel=1e-4)


def test_straight_through_gradient_reaches_scores():
    model = tiny_model("bert")
    layers = attach_masks(model, MovementPruningConfig(pruning_method="topK"))
    for layer in layers:
        layer.value = 0.5
    loss = model(**tiny_inputs(), labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert all(layer.mask_scores.grad is not None and layer.mask_scores.grad.abs().sum() > 0 for layer in layers)


def test_training_prunes_folds_and_reloads(tmp_path):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="topK", final_remaining=0.3, initial_warmup=2, final_warmup=3)
    seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if isinstance(m, MaskedLinear)]
            seen.append(sum(l.mask().sum().item() for l in layers) / sum(l.weight.numel() for l in layers))

    trainer = CompressionTrainer(model=model, args=_args(tmp_path), train_dataset=_rows(), compression=[config])
    trainer.add_callback(Probe())
    groups = trainer.create_optimizer().param_groups
    assert groups[-1]["lr"] == config.scores_learning_rate and groups[-1]["weight_decay"] == 0.0
    trainer.train()
    assert seen[0] == 1.0 and seen[-1] == pytest.approx(0.3, abs=0.01)
    assert not any(isinstance(m, MaskedLinear) for m in model.modules()) and not score_parameters(model)
    step = get_record(model).steps[-1]
    assert step["method"] == "movement" and step["info"]["remaining"] == pytest.approx(0.3, abs=0.01)
    weights = [get_adapter(model).ffn_linears(l)["in"].weight for l in get_adapter(model).layers(model)]
    assert sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights) == pytest.approx(0.7, abs=0.02)
    model.eval()
    model.save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)


def test_structured_movement_shrinks_with_identical_logits(tmp_path):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="topK", granularity="row", final_remaining=0.5, initial_warmup=0,
                                   final_warmup=0.5)
    callback = MovementPruningCallback(config)
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_rows(), callbacks=[callback])
    callback.folded = True  # inspect before the fold
    trainer.train()
    model.eval()
    before = model(**tiny_inputs()).logits
    callback.folded = False
    callback.fold(model)
    adapter = get_adapter(model)
    heads = [adapter.layer_num_heads(l, model.config) for l in adapter.layers(model)]
    widths = [adapter.ffn_linears(l)["in"].out_features for l in adapter.layers(model)]
    assert heads == [2, 2, 2, 2] and widths == [32, 32, 32, 32]
    torch.testing.assert_close(model(**tiny_inputs()).logits, before, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, before, atol=1e-5, rtol=0)
    assert [s["method"] for s in get_record(loaded).steps] == ["movement"]
    assert {"kept_heads", "ffn_sizes"} <= set(get_record(loaded).steps[0]["shape"])


def test_plain_trainer_gets_scores_group_and_soft_movement_penalty(tmp_path):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="sigmoied_threshold", initial_threshold=0.0, final_threshold=0.5,
                                   regularization_lambda=1.0, initial_warmup=0, final_warmup=0)
    callback = MovementPruningCallback(config)
    trainer = Trainer(model=model, args=_args(tmp_path, max_steps=3), train_dataset=_rows(), callbacks=[callback])
    callback.folded = True
    trainer.train()
    assert any(g.get("hfcompress_scores") for g in trainer.optimizer.param_groups)
    assert callback.regularization(model, 2) is not None and callback.regularization(model, 2) > 0


def test_resume_restores_scores_and_schedule(tmp_path):
    config = dict(pruning_method="topK", final_remaining=0.3, initial_warmup=2, final_warmup=2)
    straight = tiny_model("bert")
    CompressionTrainer(model=straight, args=_args(tmp_path / "s"), train_dataset=_rows(),
                       compression=[MovementPruningConfig(**config)]).train()

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                control.should_training_stop = True

    first = CompressionTrainer(model=tiny_model("bert"), args=_args(tmp_path / "r", save_strategy="steps", save_steps=4),
                               train_dataset=_rows(), compression=[MovementPruningConfig(**config)])
    first.add_callback(Stop())
    first.callback_handler.callbacks[-2].folded = True  # an interrupted run does not fold
    first.train()
    resumed = tiny_model("bert", seed=5)
    CompressionTrainer(model=resumed, args=_args(tmp_path / "r"), train_dataset=_rows(),
                       compression=[MovementPruningConfig(**config)]).train(
        resume_from_checkpoint=str(tmp_path / "r" / "run" / "checkpoint-4"))
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("bad", [dict(method="random"), dict(final_remaining=0), dict(final_remaining=1.5),
                                 dict(granularity="block"), dict(granularity="head", targets=["ffn"]),
                                 dict(initial_remaining=0.05, final_remaining=0.1), dict(targets=[]),
                                 dict(pruning_method="topK", target_remaining=True),
                                 dict(granularity="row", sparse_storage=True), dict(scores_init="kaiming")])
def test_invalid_configs(bad):
    with pytest.raises(ValueError):
        MovementPruningConfig(**bad)


def test_soft_movement_with_target_remaining_ends_at_final_fraction(tmp_path):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="sigmoied_threshold", target_remaining=True, final_remaining=0.3,
                                   regularization_lambda=1.0, initial_warmup=2, final_warmup=3)
    trainer = CompressionTrainer(model=model, args=_args(tmp_path), train_dataset=_rows(), compression=[config])
    trainer.train()
    step = get_record(model).steps[-1]
    assert step["config"]["pruning_method"] == "sigmoied_threshold" and step["info"]["remaining"] == pytest.approx(0.3, abs=0.01)
    adapter = get_adapter(model)
    names = adapter.linear_names(model, ["query", "key", "value", "output", "ffn_in", "ffn_out"])
    kept = [float((model.get_submodule(n).weight != 0).float().mean()) for n in names]
    assert max(kept) - min(kept) > 0.05  # one global cutoff: linears keep different shares (topK: all 0.3)


def test_pack_bits_round_trip():
    mask = torch.rand(37, 5, generator=torch.Generator().manual_seed(0)) > 0.6
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (37 * 5 + 7) // 8
    assert torch.equal(unpack_bits(packed, mask.numel()), mask.flatten())


def test_sparse_storage_saves_small_reloads_equal_and_keeps_pattern(tmp_path):
    model = tiny_model("bert")
    config = MovementPruningConfig(pruning_method="magnitude", final_remaining=0.1, initial_warmup=0, final_warmup=0.5,
                                   sparse_storage=True)
    CompressionTrainer(model=model, args=_args(tmp_path, learning_rate=0.0), train_dataset=_rows(),
                       compression=[config]).train()
    sparse_layers = [m for m in model.modules() if isinstance(m, SparseStoredLinear)]
    assert len(sparse_layers) == 4 * 6
    assert [s["method"] for s in get_record(model).steps] == ["movement", "sparse_storage"]
    model.eval()
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path / "sparse")
    dense = tiny_model("bert")
    dense.save_pretrained(tmp_path / "dense")
    sparse_bytes = (tmp_path / "sparse" / "model.safetensors").stat().st_size
    dense_bytes = (tmp_path / "dense" / "model.safetensors").stat().st_size
    encoder = sum(l.in_features * l.out_features for l in sparse_layers)
    # each pruned weight costs 1 bit instead of 4 bytes; 10% of them keep their 4-byte value
    assert dense_bytes - sparse_bytes == pytest.approx(encoder * (4 - 0.4 - 0.125), rel=0.05)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sparse").eval()
    assert sum(isinstance(m, SparseStoredLinear) for m in loaded.modules()) == len(sparse_layers)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-6, rtol=0)
    # fine-tuning the loaded model trains the kept values only: the zeros stay zeros
    layer = next(m for m in loaded.modules() if isinstance(m, SparseStoredLinear))
    zeros = layer.weight.detach() == 0
    loaded.train()
    optimizer = torch.optim.SGD(loaded.parameters(), lr=0.1)
    loaded(**tiny_inputs(), labels=torch.tensor([0, 1, 2])).loss.backward()
    assert layer.weight_values.grad is not None and layer.weight_values.grad.abs().sum() > 0
    optimizer.step()
    loaded.eval()
    with torch.no_grad():
        after = layer.weight
    assert bool((after[zeros] == 0).all()) and not torch.equal(after, layer.to_linear().weight * 0)


def test_store_sparse_skips_dense_layers_and_rejects_bad_threshold():
    model = tiny_model("bert")
    store_sparse(model)
    assert not any(isinstance(m, SparseStoredLinear) for m in model.modules())
    assert get_record(model) is None or not get_record(model).steps
    with pytest.raises(ValueError, match="min_sparsity"):
        store_sparse(model, min_sparsity=1.0)


def test_movement_on_non_linear_layers_is_a_clear_error():
    from hfcompress import LowRankConfig, compress

    model = compress(tiny_model("bert"), LowRankConfig(rank=4))
    with pytest.raises(ValueError, match="Prune before low-rank"):
        attach_masks(model, MovementPruningConfig())
