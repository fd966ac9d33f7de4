import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfcompress import FFNPruningConfig, HeadPruningConfig, compress, get_adapter, get_record, prune_ffn_neurons
from hfcompress.benchmark import count_parameters
from hfcompress.importance import compute_importance, select_units_to_prune

from .conftest import FAMILIES, tiny_inputs, tiny_model


def _loader(n_batches=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{**{"input_ids": torch.randint(5, 120, (4, 12), generator=generator)},
             "attention_mask": torch.ones(4, 12, dtype=torch.long),
             "labels": torch.randint(0, 3, (4,), generator=generator)} for _ in range(n_batches)]


def test_importance_is_deterministic_and_normalised():
    model = tiny_model("bert")
    model.train()  # importance switches dropout off itself
    a = compute_importance(model, _loader(), "heads")
    b = compute_importance(model, _loader(), "heads")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [len(x) for x in a] == [4, 4, 4, 4]
    assert all(abs(float(x.norm()) - 1) < 1e-5 for x in a)
    assert model.training
    ffn = compute_importance(model, _loader(), "ffn", max_batches=1)
    assert [len(x) for x in ffn] == [64] * 4


def test_zeroed_head_has_zero_importance_and_removal_keeps_logits():
    model = tiny_model("bert")
    layer = model.bert.encoder.layer[1]
    with torch.no_grad():  # head 2 of layer 1 contributes nothing
        layer.attention.self.value.weight[16:24].zero_()
        layer.attention.self.value.bias[16:24].zero_()
    scores = compute_importance(model, _loader(), "heads", normalize=False)
    assert float(scores[1][2]) == 0.0 and float(scores[1].min()) == 0.0
    before = model(**tiny_inputs()).logits
    compress(model, HeadPruningConfig(target=1 / 16, scope="global"), dataloader=_loader())
    assert get_adapter(model).layer_num_heads(model.bert.encoder.layer[1], model.config) == 3
    torch.testing.assert_close(model(**tiny_inputs()).logits, before, atol=1e-6, rtol=0)


def test_select_units():
    scores = [torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0.05, 0.04]), torch.tensor([0.3, 0.2, 0.8])]
    assert select_units_to_prune(scores, 3, "global") == {0: [0], 1: [1], 2: [1]}
    # layer 1 would lose both heads globally; one is always kept
    assert select_units_to_prune(scores, 4, "global") == {0: [0], 1: [1], 2: [0, 1]}
    # per layer: round(50% of each layer's units), the least important ones
    assert select_units_to_prune(scores, 4, "layer") == {0: [0, 2], 1: [1], 2: [0, 1]}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_heads_and_ffn_prune_then_roundtrip(family, scope, tmp_path):
    model = tiny_model(family)
    params = count_parameters(model)
    compress(model, HeadPruningConfig(target=0.5, scope=scope, iterations=2), dataloader=_loader())
    compress(model, FFNPruningConfig(target=0.5, scope=scope), dataloader=_loader())
    adapter = get_adapter(model)
    heads = [adapter.layer_num_heads(l, model.config) for l in adapter.layers(model)]
    widths = [adapter.ffn_width(l) for l in adapter.layers(model)]
    assert sum(heads) == 8 and min(heads) >= 1
    assert sum(widths) == 128
    if scope == "layer":
        assert heads == [2, 2, 2, 2] and widths == [32] * 4
    assert count_parameters(model) < params
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-5, rtol=0)
    assert [s["method"] for s in get_record(loaded).steps] == ["heads", "heads", "ffn"]
    assert len(get_record(loaded).steps[0]["info"]["importance"]) == 4


def test_invalid_targets():
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            HeadPruningConfig(target=bad)
    with pytest.raises(ValueError, match="scope"):
        FFNPruningConfig(scope="row")
    with pytest.raises(ValueError, match="iterations"):
        HeadPruningConfig(iterations=0)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_batches must be a positive integer"):
            FFNPruningConfig(max_batches=bad)
    with pytest.raises(ValueError, match="needs data"):
        compress(tiny_model(), HeadPruningConfig())
    with pytest.raises(ValueError, match="labels"):
        compress(tiny_model(), HeadPruningConfig(), dataloader=[{"input_ids": torch.ones(1, 4, dtype=torch.long)}])
    with pytest.raises(ValueError, match="keep at least one"):
        prune_ffn_neurons(tiny_model(), {0: list(range(64))})


def test_iterative_pruning_inside_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    from hfcompress import IterativePruningCallback

    model = tiny_model("bert")
    rows = [{"input_ids": b["input_ids"][i], "attention_mask": b["attention_mask"][i], "labels": b["labels"][i]}
            for b in _loader(4) for i in range(4)]
    callback = IterativePruningCallback(HeadPruningConfig(target=0.5, iterations=2), _loader(), prune_every=3)
    args = TrainingArguments(str(tmp_path), max_steps=6, per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             save_strategy="no", learning_rate=1e-2)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    trainer.train()
    adapter = get_adapter(model)
    assert sum(adapter.layer_num_heads(l, model.config) for l in adapter.layers(model)) == 8
    assert [s["info"]["round"] for s in get_record(model).steps] == [1, 2]
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in model.parameters())  # the optimizer trains the pruned model
    with pytest.raises(ValueError, match="prune_every"):
        IterativePruningCallback(HeadPruningConfig(), _loader(), prune_every=0)
    with pytest.raises(ValueError, match="same number of iterations"):
        IterativePruningCallback([HeadPruningConfig(iterations=2), FFNPruningConfig(iterations=3)], _loader(), 5)


def test_iterative_heads_and_ffn_together_with_distillation(tmp_path):
    import copy

    from transformers import TrainingArguments

    from hfcompress import CompressionTrainer, DistillationConfig
    from hfcompress import IterativePruningCallback

    model = tiny_model("bert")
    teacher = copy.deepcopy(model).eval()
    rows = [{"input_ids": b["input_ids"][i], "attention_mask": b["attention_mask"][i], "labels": b["labels"][i]}
            for b in _loader(4) for i in range(4)]
    callbacks = [IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=2),
                                           FFNPruningConfig(target=0.5, iterations=2)], _loader(), prune_every=3)]
    args = TrainingArguments(str(tmp_path), max_steps=6, per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             save_strategy="no", learning_rate=1e-2)
    trainer = CompressionTrainer(model=model, args=args, train_dataset=rows, callbacks=callbacks, teacher=teacher,
                                 distillation=DistillationConfig())
    trainer.train()
    adapter = get_adapter(model)
    assert sum(adapter.layer_num_heads(l, model.config) for l in adapter.layers(model)) == 8
    assert sum(adapter.ffn_linears(l)["in"].out_features for l in adapter.layers(model)) == 4 * 64 // 2
    assert [(s["method"], s["info"]["round"]) for s in get_record(model).steps] == [("heads", 1), ("ffn", 1),
                                                                          ("heads", 2), ("ffn", 2)]
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in teacher.parameters()) > sum(p.numel() for p in model.parameters())


def test_iterative_rounds_with_reconstruction_stay_closer_to_the_model_before_the_round(tmp_path):
    import copy
    from types import SimpleNamespace

    from hfcompress import IterativePruningCallback

    model = tiny_model("bert").eval()
    held_out = {k: v for k, v in _loader(1, seed=5)[0].items() if k != "labels"}
    with torch.no_grad():
        dense_logits = model(**held_out).logits
    gaps = {}
    for reconstruct in (False, True):
        pruned = copy.deepcopy(model)
        callback = IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=2),
                                             FFNPruningConfig(target=0.5, iterations=2)], _loader(6), prune_every=3,
                                            reconstruct=reconstruct)
        callback.on_step_begin(None, SimpleNamespace(global_step=0), None, model=pruned)  # round 1 only
        assert callback.rounds_done == 1
        with torch.no_grad():
            gaps[reconstruct] = float((pruned.eval()(**held_out).logits - dense_logits).norm())
        last = get_record(pruned).steps[-1]
        if reconstruct:
            errors = last["info"]["reconstruction_error"]
            assert errors["after"] < errors["before"]
            pruned.save_pretrained(tmp_path / "out")
            loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
            with torch.no_grad():
                torch.testing.assert_close(loaded(**held_out).logits, pruned(**held_out).logits, atol=1e-6, rtol=0)
        else:
            assert "reconstruction_error" not in last["info"]
    assert gaps[True] < gaps[False]
    with pytest.raises(ValueError, match="ridge"):
        IterativePruningCallback(HeadPruningConfig(), _loader(), prune_every=3, reconstruct=True, ridge=0)


def test_iterative_reconstruction_uses_the_configs_largest_batch_limit_or_the_one_given():
    from hfcompress.importance import IterativePruningCallback

    both = [HeadPruningConfig(max_batches=2), FFNPruningConfig(max_batches=5)]
    assert IterativePruningCallback(both, _loader(), 3, reconstruct=True).reconstruct_batches == 5
    unlimited = [HeadPruningConfig(max_batches=2), FFNPruningConfig(max_batches=None)]
    assert IterativePruningCallback(unlimited, _loader(), 3, reconstruct=True).reconstruct_batches is None
    assert IterativePruningCallback(both, _loader(), 3, reconstruct=True, reconstruct_batches=1).reconstruct_batches == 1
    with pytest.raises(ValueError, match="max_batches must be a positive integer"):
        IterativePruningCallback(both, _loader(), 3, reconstruct=True, reconstruct_batches=0)
