import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from hfcompress import LowRankConfig, WeightSharingConfig, compress, get_record
from hfcompress.benchmark import count_parameters, saved_size_bytes
from hfcompress.methods.lowrank import LowRankLinear, choose_rank

from .conftest import FAMILIES, tiny_inputs, tiny_model


def _roundtrip(model, path):
    model.save_pretrained(path)
    return AutoModelForSequenceClassification.from_pretrained(path).eval()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("share", ["layer", "attention", "ffn"])
def test_sharing_roundtrip_keeps_ties(family, share, tmp_path):
    model = tiny_model(family)
    compress(model, WeightSharingConfig(group_size=2, share=share, init="mean"))
    expected = model(**tiny_inputs()).logits
    loaded = _roundtrip(model, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-6, rtol=0)
    assert count_parameters(loaded) == count_parameters(model)
    from hfcompress import get_adapter

    adapter = get_adapter(loaded)
    layers = adapter.layers(loaded)
    a, b = adapter.ffn_linears(layers[0])["in"], adapter.ffn_linears(layers[1])["in"]
    assert (a.weight is b.weight) == (share in ("layer", "ffn"))
    q0, q1 = adapter.attention_linears(layers[2])["query"], adapter.attention_linears(layers[3])["query"]
    assert (q0.weight is q1.weight) == (share in ("layer", "attention"))


def test_change_through_one_layer_is_seen_by_its_group(tmp_path):
    model = tiny_model("bert")
    compress(model, WeightSharingConfig(groups=[[0, 2], [1, 3]]))
    loaded = _roundtrip(model, tmp_path)
    with torch.no_grad():
        loaded.bert.encoder.layer[2].intermediate.dense.weight.add_(1.0)
    assert torch.equal(loaded.bert.encoder.layer[0].intermediate.dense.weight,
                       loaded.bert.encoder.layer[2].intermediate.dense.weight)
    assert not torch.equal(loaded.bert.encoder.layer[1].intermediate.dense.weight,
                           loaded.bert.encoder.layer[2].intermediate.dense.weight)


def test_sharing_file_size_drops_as_computed():
    model = tiny_model("bert", layers=4)
    before = saved_size_bytes(model)
    layer_bytes = 4 * sum(p.numel() for p in model.bert.encoder.layer[0].parameters())
    compress(model, WeightSharingConfig(group_size=4))  # one layer's weights serve all four
    assert abs((before - saved_size_bytes(model)) - 3 * layer_bytes) < 8192


def test_shared_model_trains_and_stays_tied(tmp_path):
    model = tiny_model("bert")
    compress(model, WeightSharingConfig(group_size=2))
    loaded = _roundtrip(model, tmp_path)
    rows = [{**{k: v[i] for k, v in tiny_inputs().items()}, "labels": torch.tensor(i % 3)} for i in range(3)]
    args = TrainingArguments(str(tmp_path / "r"), max_steps=2, per_device_train_batch_size=3, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-2)
    before = loaded.bert.encoder.layer[1].output.dense.weight.clone()
    Trainer(model=loaded, args=args, train_dataset=rows).train()
    layers = loaded.bert.encoder.layer
    assert layers[0].output.dense.weight is layers[1].output.dense.weight
    assert not torch.equal(before, layers[1].output.dense.weight)


@pytest.mark.subprocess
def test_sharing_reload_is_silent_about_missing_keys(tmp_path):
    model = tiny_model("bert")
    compress(model, WeightSharingConfig(group_size=2))
    model.save_pretrained(tmp_path)
    code = ("import hfcompress\nfrom transformers import AutoModelForSequenceClassification as A\n"
            f"A.from_pretrained({str(tmp_path)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "MISSING" not in result.stderr, result.stderr[-2000:]


def test_regmean_sharing_reproduces_members_better_than_the_mean(tmp_path):
    from hfcompress.methods.sharing.model import regmean_linears

    class TwoLinears(torch.nn.Module):
        """Two linears fed differently scaled inputs, as successive layers are."""

        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
            self.register_buffer("scale_a", torch.logspace(1, -1, 8))
            self.register_buffer("scale_b", torch.logspace(-1, 1, 8))

        def forward(self, x, attention_mask=None):
            return self.a(x * self.scale_a) + self.b(x * self.scale_b + 1.0)

    torch.manual_seed(0)
    toy = TwoLinears()
    batches = [{"x": torch.randn(4, 16, 8)} for _ in range(3)]
    weight, biases = regmean_linears(toy, {"a": ["a", "b"]}, batches, damping=0.0)["a"]
    bias = biases["a"]  # one bias, the shared linear's
    damped_weight, damped_biases = regmean_linears(toy, {"a": ["a", "b"]}, batches)["a"]  # pulled toward the mean
    damped = damped_weight, damped_biases["a"]
    inputs = {"a": torch.cat([b["x"] for b in batches]) * toy.scale_a,
              "b": torch.cat([b["x"] for b in batches]) * toy.scale_b + 1.0}

    def error(w, b):
        return sum((inputs[n].double() @ w.T.double() + b.double() - getattr(toy, n)(inputs[n]).double()).pow(2).sum()
                   for n in inputs).item()
    mean_weight, mean_bias = (toy.a.weight + toy.b.weight).detach() / 2, (toy.a.bias + toy.b.bias).detach() / 2
    assert error(weight, bias) <= error(*damped) < 0.5 * error(mean_weight, mean_bias)
    # The least-squares optimum: no small perturbation does better.
    assert error(weight, bias) <= error(weight + 1e-3 * torch.randn_like(weight), bias)

    batches = [{**tiny_inputs(batch=4, length=12, seed=seed), "labels": torch.tensor([0, 1, 0, 1])} for seed in range(4)]
    shared = compress(tiny_model("bert"), WeightSharingConfig(group_size=2, init="regmean", max_batches=4),
                      dataloader=batches)
    assert shared.bert.encoder.layer[0].intermediate.dense.weight is shared.bert.encoder.layer[1].intermediate.dense.weight
    loaded = _roundtrip(shared, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, shared(**tiny_inputs()).logits, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="dataloader="):
        compress(tiny_model("bert"), WeightSharingConfig(group_size=2, init="regmean"))


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_weights_only_keeps_per_layer_biases_and_norms(family, tmp_path):
    from hfcompress import get_adapter

    model = tiny_model(family)
    torch.manual_seed(0)
    with torch.no_grad():  # tiny models start with zero biases and unit LayerNorms: make every layer's differ
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter))
    adapter = get_adapter(model)
    own_before = {name: p.clone() for name, p in adapter.layers(model)[1].named_parameters() if p.dim() == 1}
    compress(model, WeightSharingConfig(group_size=2, linear_weights_only=True, init="mean"))
    expected = model(**tiny_inputs()).logits
    loaded = _roundtrip(model, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-6, rtol=0)
    first, second = adapter.layers(loaded)[:2]
    for role in adapter.linear_paths().values():
        assert first.get_submodule(role).weight is second.get_submodule(role).weight
    for name, parameter in second.named_parameters():  # biases and LayerNorms: the layer's own, unchanged
        if name in own_before:
            torch.testing.assert_close(parameter, own_before[name], atol=0, rtol=0)
    tied = {id(p) for p in first.parameters()}
    norms = [p for p in second.parameters() if id(p) not in tied]
    # Per layer: the six linear biases and the LayerNorms stay its own, a few percent of the layer.
    own = sum(p.numel() for p in norms)
    assert 0 < own < 0.05 * sum(p.numel() for p in second.parameters())
    full = tiny_model(family)
    compress(full, WeightSharingConfig(group_size=2, init="mean"))
    # Whole-layer sharing ties those too, except a parameter the group's first layer lacks (ModernBERT's layer 0 has
    # no attention LayerNorm): in the group of layers 0 and 1, layer 1's stays its own in both modes.
    first_names = {name for name, _ in adapter.layers(loaded)[0].named_parameters()}
    not_in_first = sum(p.numel() for name, p in adapter.layers(loaded)[1].named_parameters() if name not in first_names)
    assert count_parameters(loaded) - count_parameters(full) == own * len(adapter.layers(loaded)) // 2 - not_in_first


def test_regmean_with_per_member_biases_is_the_least_squares_optimum():
    from hfcompress.methods.sharing.model import regmean_linears

    class TwoLinears(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)

        def forward(self, x, attention_mask=None):
            return self.a(x * 2.0 + 3.0) + self.b(x * 0.5 - 1.0)

    torch.manual_seed(0)
    toy = TwoLinears()
    batches = [{"x": torch.randn(4, 16, 8)} for _ in range(3)]
    x = torch.cat([b["x"] for b in batches]).reshape(-1, 8).double()
    inputs = {"a": x * 2.0 + 3.0, "b": x * 0.5 - 1.0}
    weight, biases = regmean_linears(toy, {"a": ["a", "b"]}, batches, damping=0.0, per_member_bias=True)["a"]
    shared_weight, shared_bias = regmean_linears(toy, {"a": ["a", "b"]}, batches, damping=0.0)["a"]

    def error(w, bias_of):
        return sum((inputs[n] @ w.T + bias_of[n] - getattr(toy, n)(inputs[n].float()).double()).pow(2).sum()
                   for n in inputs).item()
    best = error(weight, biases)
    assert best < error(shared_weight, {"a": shared_bias["a"], "b": shared_bias["a"]})
    for _ in range(3):
        assert best <= error(weight + 1e-3 * torch.randn_like(weight), biases)
        assert best <= error(weight, {n: b + 1e-3 * torch.randn_like(b) for n, b in biases.items()})


def test_regmean_linear_weights_only_reloads(tmp_path):
    batches = [{**tiny_inputs(batch=4, length=12, seed=seed), "labels": torch.tensor([0, 1, 0, 1])} for seed in range(4)]
    shared = compress(tiny_model("bert"), WeightSharingConfig(group_size=2, init="regmean", max_batches=4,
                                                              linear_weights_only=True), dataloader=batches)
    layers = shared.bert.encoder.layer
    assert layers[0].output.dense.weight is layers[1].output.dense.weight
    assert layers[0].output.dense.bias is not layers[1].output.dense.bias
    loaded = _roundtrip(shared, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, shared(**tiny_inputs()).logits, atol=1e-6, rtol=0)
    assert get_record(loaded).steps[-1]["shape"]["linear_weights_only"] is True


@pytest.mark.parametrize("bad", [dict(), dict(groups=[[0, 1]], group_size=2), dict(group_size=1),
                                 dict(groups=[[0]]), dict(groups=[[0, 1], [1, 2]]), dict(group_size=2, share="x"),
                                 dict(group_size=2, init="median"), dict(group_size=2, init="regmean", max_batches=0),
                                 dict(group_size=2, pattern="zigzag"), dict(groups=[[0, 1]], pattern="cycle")])
def test_invalid_sharing(bad):
    with pytest.raises(ValueError):
        WeightSharingConfig(**bad)


@pytest.mark.parametrize("pattern, size, expected", [
    ("consecutive", 2, [[0, 1], [2, 3], [4, 5]]), ("cycle", 2, [[0, 3], [1, 4], [2, 5]]),
    ("cycle", 3, [[0, 2, 4], [1, 3, 5]]), ("cycle", 6, [[0, 1, 2, 3, 4, 5]])])
def test_group_patterns(pattern, size, expected):
    assert WeightSharingConfig(group_size=size, pattern=pattern).resolve_groups(6) == expected


def test_cycle_sharing_with_first_init_runs_the_first_layers_twice(tmp_path):
    model = tiny_model(layers=4).eval()
    expected = AutoModelForSequenceClassification.from_config(model.config).eval()
    expected.load_state_dict(model.state_dict())
    from hfcompress import get_adapter
    encoder_layers = get_adapter(expected).layers(expected)
    encoder_layers[2].load_state_dict(encoder_layers[0].state_dict())
    encoder_layers[3].load_state_dict(encoder_layers[1].state_dict())
    shared = compress(model, WeightSharingConfig(group_size=2, pattern="cycle", init="first"))
    torch.testing.assert_close(shared(**tiny_inputs()).logits, expected(**tiny_inputs()).logits)
    shared.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert get_record(loaded).steps[-1]["shape"]["groups"] == [[0, 2], [1, 3]]
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, shared(**tiny_inputs()).logits)


def test_invalid_groups_for_model():
    with pytest.raises(ValueError, match="layers 0..3"):
        compress(tiny_model(layers=4), WeightSharingConfig(groups=[[0, 7]]))
    with pytest.raises(ValueError, match="does not divide"):
        compress(tiny_model(layers=4), WeightSharingConfig(group_size=3))


@pytest.mark.parametrize("family", FAMILIES)
def test_full_rank_svd_reproduces_logits(family, tmp_path):
    model = tiny_model(family)
    expected = model(**tiny_inputs()).logits
    compress(model, LowRankConfig(rank=32, targets=["attention", "ffn", "embeddings"]))
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    torch.testing.assert_close(model(**tiny_inputs()).logits, expected, atol=1e-4, rtol=0)
    loaded = _roundtrip(model, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)


def test_param_ratio_and_energy(tmp_path):
    model = tiny_model("bert")
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n and p.dim() == 2)
    compress(model, LowRankConfig(param_ratio=0.5))
    factored = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n and p.dim() == 2)
    assert 0.4 * encoder <= factored <= 0.5 * encoder
    size = saved_size_bytes(model)
    loaded = _roundtrip(model, tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size == size
    assert get_record(loaded).steps[0]["shape"]["ranks"]["bert.encoder.layer.0.intermediate.dense"] == 10
    weight = torch.diag(torch.tensor([10.0, 1.0, 0.1, 0.01]))
    assert choose_rank(weight, LowRankConfig(energy=0.99)) == 1
    assert choose_rank(weight, LowRankConfig(energy=0.999)) == 2
    assert choose_rank(weight, LowRankConfig(energy=1.0)) == 4


def test_global_allocation_spends_the_budget_where_the_energy_is(tmp_path):
    from hfcompress.methods.lowrank import allocate_ranks

    generator = torch.Generator().manual_seed(0)
    low = torch.randn(64, 4, generator=generator) @ torch.randn(4, 32, generator=generator)  # rank 4
    noise = torch.randn(64, 32, generator=generator)  # energy spread over all 32 directions
    ranks = allocate_ranks({"low": low, "noise": noise}, 0.4)
    assert ranks["low"] == 4 < ranks["noise"]
    spent = sum(rank * 96 if rank else 64 * 32 for rank in ranks.values())
    assert spent <= 0.4 * 2 * 64 * 32
    model = tiny_model("bert")
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n and p.dim() == 2)
    compress(model, LowRankConfig(param_ratio=0.5, allocation="global"))
    factored = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n and p.dim() == 2)
    assert factored <= 0.5 * encoder
    loaded = _roundtrip(model, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)


def test_staged_lowrank_refactorizes_and_reloads(tmp_path):
    model = tiny_model("bert")
    name = "bert.encoder.layer.0.intermediate.dense"
    compress(model, LowRankConfig(param_ratio=0.75))
    first = model.get_submodule(name).rank
    product = model.get_submodule(name).weight.detach().clone()
    compress(model, LowRankConfig(param_ratio=0.5))
    second = model.get_submodule(name)
    assert isinstance(second, LowRankLinear) and second.rank < first
    # The second stage is the best rank-r approximation of the first stage's product.
    u, singular, vh = torch.linalg.svd(product)
    best = (u[:, :second.rank] * singular[:second.rank]) @ vh[:second.rank]
    torch.testing.assert_close(second.weight, best, atol=1e-5, rtol=0)
    compress(model, LowRankConfig(param_ratio=0.75))  # a higher rank than present: left alone
    assert model.get_submodule(name).rank == second.rank
    loaded = _roundtrip(model, tmp_path)
    assert loaded.get_submodule(name).rank == second.rank
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)


def test_whitened_svd_minimizes_output_error_not_weight_error():
    from hfcompress.methods.lowrank.layers import whitening_factor
    from hfcompress.methods.lowrank.layers import svd_factors

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 32, generator=generator)
    # Inputs with a few loud channels, as transformer activations have.
    x = torch.randn(2000, 32, generator=generator) * torch.logspace(1, -1, 32)
    whitening = whitening_factor((x.double().T @ x.double()) / x.shape[0], damping=0.0)
    left, right = svd_factors(weight, 8)
    w_left, w_right = svd_factors(weight, 8, whitening)
    output_error = lambda a, b: ((x @ weight.T - x @ (a @ b).T).norm() / (x @ weight.T).norm()).item()  # noqa: E731
    assert output_error(w_left, w_right) < 0.7 * output_error(left, right)
    assert (weight - w_left @ w_right).norm() > (weight - left @ right).norm()  # it trades weight error for output error
    full_left, full_right = svd_factors(weight, 32, whitening)
    torch.testing.assert_close(full_left @ full_right, weight, atol=1e-4, rtol=0)


def _calibration_batches(count: int = 4):
    return [{**tiny_inputs(batch=4, length=12, seed=seed), "labels": torch.tensor([0, 1, 0, 1])} for seed in range(count)]


def test_activation_aware_lowrank_fits_real_inputs_and_reloads(tmp_path):
    from hfcompress.calibration import input_second_moments

    model = tiny_model("bert")
    name = "bert.encoder.layer.1.intermediate.dense"
    batches = _calibration_batches()
    # Padded positions do not count: the moment equals the one over real tokens only.
    captured = []
    handle = model.get_submodule(name).register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    moments = input_second_moments(model, [name], batches[:1])
    handle.remove()
    real = captured[0][batches[0]["attention_mask"].bool()].double()
    torch.testing.assert_close(moments[name], real.T @ real / real.shape[0])

    expected = model(**tiny_inputs()).logits
    plain = compress(tiny_model("bert"), LowRankConfig(rank=6))
    aware = compress(model, LowRankConfig(rank=6, activation_aware=True, max_batches=3), dataloader=batches)
    assert isinstance(aware.get_submodule(name), LowRankLinear)
    calib = tiny_inputs(batch=4, length=12, seed=0)
    teacher = tiny_model("bert")(**calib).logits
    assert (aware(**calib).logits - teacher).norm() < (plain(**calib).logits - teacher).norm()
    loaded = _roundtrip(aware, tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, aware(**tiny_inputs()).logits, atol=1e-6, rtol=0)
    assert get_record(loaded).steps[0]["config"]["activation_aware"] is True
    assert not torch.allclose(aware(**tiny_inputs()).logits, expected)  # rank 6 of 32 does change the model


def test_activation_aware_lowrank_needs_data():
    with pytest.raises(ValueError, match="dataloader=") as error:
        compress(tiny_model("bert"), LowRankConfig(rank=6, activation_aware=True))
    assert "calibration" in str(error.value)
    with pytest.raises(ValueError, match="no batches"):
        compress(tiny_model("bert"), LowRankConfig(rank=6, activation_aware=True), dataloader=[])


@pytest.mark.parametrize("bad", [dict(), dict(rank=4, energy=0.9), dict(rank=0), dict(energy=1.5),
                                 dict(param_ratio=1.0), dict(rank=4, targets=["pooler"]),
                                 dict(rank=4, allocation="global"), dict(param_ratio=0.5, allocation="per-layer"),
                                 dict(rank=4, activation_aware=True, max_batches=0)])
def test_invalid_lowrank(bad):
    with pytest.raises(ValueError):
        LowRankConfig(**bad)


def test_compression_trainer_fine_tunes_after_sharing_and_lowrank(tmp_path):
    from hfcompress import CompressCallback, CompressionTrainer

    rows = [{**{k: v[i] for k, v in tiny_inputs().items()}, "labels": torch.tensor(i % 3)} for i in range(3)]
    args = TrainingArguments(str(tmp_path / "r"), max_steps=2, per_device_train_batch_size=3, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-2)
    model = tiny_model("bert")
    trainer = CompressionTrainer(model=model, args=args, train_dataset=rows,
                                 compression=[WeightSharingConfig(group_size=2), LowRankConfig(param_ratio=0.5)])
    optimized = {id(p) for group in trainer.create_optimizer().param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in model.parameters())  # the optimizer holds the new parameters
    trainer.train()
    assert [s["method"] for s in get_record(model).steps] == ["sharing", "lowrank"]
    with pytest.raises(TypeError, match="post-training config"):
        CompressCallback({"not": "a config"})


def test_compression_trainer_calibrates_data_driven_configs_on_its_train_set(tmp_path):
    from torch.utils.data import DataLoader
    from transformers import default_data_collator

    from hfcompress import CompressionTrainer

    rows = [{**{k: v[i] for k, v in tiny_inputs(batch=8, length=12, seed=3).items()}, "labels": torch.tensor(i % 3)}
            for i in range(8)]
    args = TrainingArguments(str(tmp_path / "r"), max_steps=1, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, report_to=[], use_cpu=True, save_strategy="no")
    config = LowRankConfig(rank=6, activation_aware=True, max_batches=2)
    trainer = CompressionTrainer(model=tiny_model("bert"), args=args, train_dataset=rows, compression=[config])
    # The same as compressing by hand on the train set in order: deterministic, so every process
    # and a resumed run build the same factors.
    by_hand = compress(tiny_model("bert"), config, dataloader=DataLoader(rows, batch_size=4,
                                                                        collate_fn=default_data_collator))
    name = "bert.encoder.layer.0.attention.self.query"
    for part in ("down", "up"):
        torch.testing.assert_close(trainer.model.get_submodule(f"{name}.{part}").weight,
                                   by_hand.get_submodule(f"{name}.{part}").weight)
    with pytest.raises(ValueError, match="train_dataset"):
        CompressionTrainer(model=tiny_model("bert"), args=args, compression=[config])
