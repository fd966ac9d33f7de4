import copy
import json
import os
import platform
import subprocess
import sys
import warnings

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import hfcompress
from hfcompress import DynamicQuantConfig, OnnxSequenceClassifier, compress, export_onnx, get_record, prune_heads
from hfcompress.adapters import get_adapter
from hfcompress.benchmark import saved_size_bytes
from hfcompress.methods.quantization import Int8DynamicLinear, Int8StoredEmbedding
from hfcompress.cpu import VNNI_ISAS, full_range_int8_kernels, int8_isa
from hfcompress.methods.quantization.kernels import default_ort_fusions

from .conftest import FAMILIES, tiny_inputs, tiny_model

# int8 weights (per-channel) and int8 dynamic activations: logits of a tiny random model move
# by a few thousandths; we allow 0.05 on logits of magnitude ~0.5.
INT8_ATOL = 0.05


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_roundtrip_identical(family, tmp_path):
    model = tiny_model(family, hidden=64, ffn=128)
    inputs = tiny_inputs()
    fp32 = model(**inputs).logits
    compress(model, DynamicQuantConfig(modules=["attention", "ffn", "classifier"], embeddings=True))
    int8 = model(**inputs).logits
    torch.testing.assert_close(int8, fp32, atol=INT8_ATOL, rtol=0)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**inputs).logits, int8)  # identical int8 outputs after reload
    assert loaded.is_quantized
    assert sum(isinstance(m, Int8DynamicLinear) for m in loaded.modules()) == \
        sum(isinstance(m, Int8DynamicLinear) for m in model.modules()) >= 4 * len(set(get_adapter(model).linear_paths().values()))
    assert isinstance(loaded.get_input_embeddings(), Int8StoredEmbedding)


def test_checkpoint_holds_int8_tensors_not_pickles(tmp_path):
    from safetensors import safe_open

    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig())
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
        q = handle.get_tensor("bert.encoder.layer.0.attention.self.query.weight_int8")
    assert q.dtype == torch.int8 and q.shape == (64, 64)
    assert "bert.encoder.layer.0.attention.self.query.weight" not in keys
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))


def test_file_size_as_expected():
    model = tiny_model("bert", hidden=64, ffn=128, layers=4)
    fp32 = saved_size_bytes(model)
    encoder_linear_weights = 4 * (4 * 64 * 64 + 2 * 64 * 128)
    embedding = model.get_input_embeddings().weight.numel()
    compress(model, DynamicQuantConfig(embeddings=True))
    scales = 4 * (4 * 64 + 128 + 64) + 120  # one fp32 per output row / embedding row
    expected = fp32 - 3 * (encoder_linear_weights + embedding) + 4 * scales
    assert abs(saved_size_bytes(model) - expected) < 4096  # safetensors header grows with the new keys


def test_composes_with_head_pruning(tmp_path):
    model = tiny_model("roberta", hidden=64, ffn=128)
    prune_heads(model, {0: [0, 2], 3: [1]})
    compress(model, DynamicQuantConfig())
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**tiny_inputs()).logits, expected)
    assert [s["method"] for s in get_record(loaded).steps] == ["heads", "int8_dynamic"]
    assert loaded.roberta.encoder.layer[0].attention.self.query.out_features == 32


def test_int8_into_other_shape_is_a_clear_error(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 256  # a model of another shape
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not have the shapes its config.json"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    config["intermediate_size"] = 128
    config["quantization_config"]["steps"][0]["shape"]["linears"].append("bert.encoder.layer.0.nonexistent")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="nonexistent.*does not have"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)


def _fake_quant_linear(layer: Int8DynamicLinear, x: torch.Tensor, activation_levels: int) -> torch.Tensor:
    """What the layer should compute: per-tensor asymmetric activations times its int8 weights."""
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (high - low) / activation_levels
    zero = round(-low / scale)
    x_q = (torch.clamp(torch.round(x / scale) + zero, 0, activation_levels) - zero) * scale
    return x_q @ layer.dequantized_weight().T + layer.bias


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_int8_linear_computes_its_stated_precision(weight_bits):
    # Wide, offset activations: with 8-bit weights and 8-bit activations AVX2 kernels would
    # saturate their 16-bit pair sums and miss this reference by ~8%.
    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 96)
    x = torch.randn(64, 512) * 3 + 1
    layer = Int8DynamicLinear.from_linear(linear, weight_bits=weight_bits)
    assert layer.weight_int8.abs().max().item() == 2 ** (weight_bits - 1) - 1
    # 7-bit weights always get 8-bit activations; 8-bit weights only where the kernels are exact.
    assert layer.activation_bits == (8 if weight_bits == 7 or full_range_int8_kernels() else 7)
    expected = _fake_quant_linear(layer, x, 2 ** layer.activation_bits - 1)
    error = (layer(x) - expected).norm() / expected.norm()
    assert error < 1e-3, f"{weight_bits}-bit weights: relative error {error:.4f} against the stated arithmetic"


def test_default_weight_bits_follow_the_kernels_and_are_recorded(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig())
    bits = 8 if full_range_int8_kernels() else 7
    assert get_record(model).steps[-1]["shape"]["weight_bits"] == bits
    assert model.bert.encoder.layer[0].output.dense.weight_bits == bits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.bert.encoder.layer[0].output.dense.weight_bits == bits


_LOAD_WHERE_KERNELS_SATURATE = """
import sys, torch
from transformers import AutoModelForSequenceClassification
import hfcompress
from hfcompress.cpu import VNNI_ISAS, full_range_int8_kernels, int8_isa
from hfcompress.methods.quantization.kernels import default_ort_fusions
from tests.test_quantization import _fake_quant_linear
assert not full_range_int8_kernels(), "fbgemm capped at AVX2 should saturate 8-bit x 8-bit products"
loaded = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
layer = loaded.bert.encoder.layer[0].output.dense
assert (layer.weight_bits, layer.activation_bits) == (8, 7), (layer.weight_bits, layer.activation_bits)
torch.manual_seed(0)
x = torch.randn(64, layer.in_features) * 3 + 1
expected = _fake_quant_linear(layer, x, 127)
assert ((layer(x) - expected).norm() / expected.norm()).item() < 1e-3
"""


@pytest.mark.subprocess
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="fbgemm's instruction cap is x86 only")
def test_8_bit_weights_fall_back_to_7_bit_activations_where_kernels_saturate(tmp_path):
    # Saved with 8-bit weights (the default on VNNI CPUs), loaded where int8 kernels are AVX2's
    # (FBGEMM_ENABLE_INSTRUCTIONS caps fbgemm like an older CPU): 7-bit activations, not overflow.
    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig(weight_bits=8))
    model.save_pretrained(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _LOAD_WHERE_KERNELS_SATURATE, str(tmp_path)], capture_output=True,
                            text=True, cwd=root, env={**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_old_int8_record_without_weight_bits_loads_as_8_bit(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig(weight_bits=8))
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["quantization_config"]["steps"][0]["shape"]["weight_bits"]  # as written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.bert.encoder.layer[0].output.dense.weight_bits == 8
    assert torch.equal(loaded(**tiny_inputs()).logits, expected)


def test_bad_configs():
    with pytest.raises(ValueError, match="weight_bits must be 7 or 8"):
        DynamicQuantConfig(weight_bits=4)
    with pytest.raises(ValueError, match="backend"):
        DynamicQuantConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="subset"):
        DynamicQuantConfig(modules=["embeddings"])
    with pytest.raises(ValueError, match="export_onnx"):
        compress(tiny_model(), DynamicQuantConfig(backend="onnxruntime"))
    with pytest.raises(TypeError, match="post-training configs"):
        compress(tiny_model(), hfcompress.TheseusConfig())


def test_onnx_fusions_default_follows_the_cpu_and_is_recorded(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    int8 = _quiet_export(model, tmp_path / "int8", int8=True)
    fp32 = _quiet_export(model, tmp_path / "fp32", int8=False)
    per_token = _quiet_export(model, tmp_path / "per_token", int8=True, ffn_per_token=True)
    recorded = lambda folder: json.loads((folder / "config.json").read_text())["hfcompress_onnx"]["optimized"]  # noqa: E731
    assert recorded(int8) == default_ort_fusions(True) == (int8_isa() not in VNNI_ISAS)
    assert recorded(fp32) is True and recorded(per_token) is True


@pytest.mark.parametrize("optimize", [False, True])
def test_onnx_int8_matches_torch(tmp_path, optimize):
    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    expected = model(**inputs).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = export_onnx(model, tmp_path / "onnx", int8=True, optimize=optimize)
    runner = OnnxSequenceClassifier.from_pretrained(folder, threads=1)
    torch.testing.assert_close(runner(**inputs).logits, expected, atol=INT8_ATOL, rtol=0)
    fp32 = OnnxSequenceClassifier.from_pretrained(export_onnx(model, tmp_path / "fp32", int8=False, optimize=optimize))
    torch.testing.assert_close(fp32(**inputs).logits, expected, atol=1e-4, rtol=0)
    assert (folder / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size / 2


@pytest.mark.parametrize("pruned", [{layer: [0] for layer in range(4)}, {0: [0], 2: [1, 2]}])
def test_fused_onnx_export_of_a_head_pruned_model(tmp_path, pruned):
    # Even pruning (3 of 4 heads everywhere) once passed num_heads=3 with hidden 32 to the fuser, which asserts.
    model = prune_heads(tiny_model("bert"), pruned)
    inputs = tiny_inputs()
    expected = model(**inputs).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = export_onnx(model, tmp_path / "onnx", int8=False, optimize=True)
    torch.testing.assert_close(OnnxSequenceClassifier.from_pretrained(folder)(**inputs).logits, expected,
                               atol=1e-4, rtol=0)


def test_per_token_matmul_gives_each_row_its_own_scale():
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from hfcompress.methods.quantization.onnx import _per_token_matmuls

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(16, 8)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="ffn")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])],
                              [numpy_helper.from_array(weight, "w")])
    x = rng.normal(size=(2, 5, 16)).astype(np.float32)
    sessions = []
    for opset in (17, 18):  # ReduceMax's axes: an attribute before opset 18, an input since
        model = _per_token_matmuls(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]),
                                   ["ffn"], 7, True)
        assert [n.op_type for n in model.graph.node][-1] == "MatMulIntegerToFloat"
        assert "w" not in {init.name for init in model.graph.initializer}  # float weight dropped
        sessions.append(ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]))
    session = sessions[0]
    np.testing.assert_array_equal(sessions[1].run(None, {"x": x})[0], session.run(None, {"x": x})[0])
    # Reference: symmetric 8-bit rows (scale max|row| / 127), 7-bit per-column weights.
    row_scale = np.abs(x).max(-1, keepdims=True) / 127
    weight_scale = np.abs(weight).max(0) / 63
    expected = (np.round(x / row_scale) * row_scale) @ (np.round(weight / weight_scale) * weight_scale)
    y = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(y, expected, atol=1e-4)
    # One token with 1000x larger activations leaves every other token's output unchanged.
    outlier = x.copy()
    outlier[0, 0] *= 1000
    y_outlier = session.run(None, {"x": outlier})[0]
    np.testing.assert_array_equal(y_outlier.reshape(-1, 8)[1:], y.reshape(-1, 8)[1:])


def _quiet_export(model, folder, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings
        return export_onnx(model, folder, **options)


def _count_nodes(folder, keep) -> int:
    import onnx

    graph = onnx.load(str(folder / "model.onnx")).graph
    weights = {init.name for init in graph.initializer}
    return sum(bool(keep(node, weights)) for node in graph.node)


def test_onnx_ffn_options_change_only_the_ffn_matmuls(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    default = _quiet_export(model, tmp_path / "default", int8=True)
    per_token = _quiet_export(model, tmp_path / "token", int8=True, ffn_per_token=True)
    out_float = _quiet_export(model, tmp_path / "out-float", int8=True, keep_ffn_out_float=True)

    def per_token_matmuls(folder):
        return _count_nodes(folder, lambda node, _: node.op_type == "MatMulIntegerToFloat" and "PerToken" in node.name)

    def float_matmuls(folder):
        return _count_nodes(folder, lambda node, weights: node.op_type == "MatMul" and any(i in weights for i in node.input))

    assert per_token_matmuls(per_token) == 2 * 4 and per_token_matmuls(default) == 0  # FFN in + out, 4 layers
    assert float_matmuls(out_float) - float_matmuls(default) == 4  # one FFN output per layer
    settings = lambda folder: json.loads((folder / "config.json").read_text())["hfcompress_onnx"]  # noqa: E731
    assert settings(per_token)["ffn_per_token"] is True and settings(default)["ffn_per_token"] is False
    assert settings(out_float)["ffn_out_float"] is True
    for folder in (per_token, out_float):
        logits = OnnxSequenceClassifier.from_pretrained(folder, threads=1)(**inputs).logits
        torch.testing.assert_close(logits, model(**inputs).logits, atol=INT8_ATOL, rtol=0)
    with pytest.raises(ValueError, match="ffn_per_token needs int8=True and optimize=True"):
        export_onnx(model, tmp_path / "plain", int8=True, optimize=False, ffn_per_token=True)
    with pytest.raises(ValueError, match="optimize=True"):
        export_onnx(model, tmp_path / "plain", int8=True, optimize=False, keep_ffn_out_float=True)


def test_onnx_missing_file_error(tmp_path):
    with pytest.raises(ValueError, match="no model.onnx"):
        OnnxSequenceClassifier.from_pretrained(tmp_path)


@pytest.mark.slow
def test_real_minilm_int8_close_and_small(minilm_path, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2).eval()
    inputs = tiny_inputs(batch=2, length=24)
    fp32 = model(**inputs).logits
    size = saved_size_bytes(model)
    compress(model, DynamicQuantConfig(embeddings=True))
    torch.testing.assert_close(model(**inputs).logits, fp32, atol=0.05, rtol=0)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.3 * size
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_callback_quantizes_at_train_end(tmp_path):
    from hfcompress import DynamicQuantCallback, TheseusCallback, TheseusConfig

    model = tiny_model("bert", layers=4, hidden=64, ffn=128)
    rows = [{"input_ids": torch.randint(5, 120, (10,)), "attention_mask": torch.ones(10, dtype=torch.long),
             "labels": torch.tensor(i % 3)} for i in range(16)]
    args = TrainingArguments(str(tmp_path / "r"), max_steps=2, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no")
    Trainer(model=model, args=args, train_dataset=rows,
            callbacks=[TheseusCallback(TheseusConfig(successor_layers=2, steps_for_replacing=1)),
                       DynamicQuantCallback()]).train()
    assert model.config.num_hidden_layers == 2
    assert isinstance(model.bert.encoder.layer[1].output.dense, Int8DynamicLinear)
    model.save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert [s["method"] for s in get_record(loaded).steps] == ["theseus", "int8_dynamic"]
    assert torch.equal(loaded(**tiny_inputs()).logits, model.eval()(**tiny_inputs()).logits)


def test_cli_export(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    from hfcompress.cli import main

    model = tiny_model("bert", hidden=64, ffn=128)
    model.save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(tmp_path / "m"), "--onnx", "--int8", "--output", str(tmp_path / "o")]) == 0
    runner = OnnxSequenceClassifier.from_pretrained(tmp_path / "o")
    torch.testing.assert_close(runner(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=INT8_ATOL, rtol=0)
    assert (tmp_path / "o" / "tokenizer.json").is_file()


def test_cli_export_calibrated(tmp_path, minilm_path, capsys):
    from transformers import AutoTokenizer, BertConfig

    from hfcompress.cli import main
    from hfcompress.data import sample_data_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    flags = ["export", str(tmp_path / "m"), "--onnx", "--int8", "--smoothing", "0.8", "--rounding", "gptq"]
    assert main([*flags, "--output", str(tmp_path / "o")]) == 2
    assert "add --task" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*flags, "--task", "sst2", "--data_dir", sample_data_dir(), "--calibration_batches", "2",
                     "--output", str(tmp_path / "o")]) == 0
    recorded = json.loads((tmp_path / "o" / "config.json").read_text())["hfcompress_onnx"]
    assert recorded["smoothing"] == 0.8 and recorded["rounding"] == "gptq"
    static = ["export", str(tmp_path / "m"), "--onnx", "--int8", "--static", "--task", "sst2", "--data_dir",
              sample_data_dir(), "--calibration_batches", "2", "--output", str(tmp_path / "s")]
    assert main(static) == 0
    assert json.loads((tmp_path / "s" / "config.json").read_text())["hfcompress_onnx"]["int8"] == "static"
    assert main([a for a in static if a != "--int8"]) == 2 and "add --int8" in capsys.readouterr().err


def test_ffn_out_kept_float_torch_and_reload(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    compress(model, DynamicQuantConfig(modules=["attention", "ffn_in"]))
    adapter = hfcompress.get_adapter(model)
    for layer in adapter.layers(model):
        linears = adapter.ffn_linears(layer)
        assert isinstance(linears["in"], Int8DynamicLinear) and isinstance(linears["out"], torch.nn.Linear)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    assert sum(isinstance(m, Int8DynamicLinear) for m in loaded.modules()) == 5 * 4


def test_int8_on_sparse_stored_layers_is_a_clear_error():
    from hfcompress.methods.movement import store_sparse

    model = tiny_model("bert", hidden=64, ffn=128)
    linear = hfcompress.get_adapter(model).ffn_linears(hfcompress.get_adapter(model).layers(model)[0])["in"]
    with torch.no_grad():
        linear.weight[:, : linear.in_features * 3 // 4] = 0
    store_sparse(model)
    with pytest.raises(ValueError, match="store_sparse"):
        compress(model, DynamicQuantConfig())


def test_int8_quantizes_low_rank_factors_and_reloads(tmp_path):
    from hfcompress import LowRankConfig

    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    compress(model, LowRankConfig(rank=16))
    fp32 = model(**inputs).logits
    compress(model, DynamicQuantConfig())
    quantized = [n for n, m in model.named_modules() if isinstance(m, Int8DynamicLinear)]
    assert len(quantized) == 4 * 6 * 2 and all(n.endswith((".down", ".up")) for n in quantized)
    torch.testing.assert_close(model(**inputs).logits, fp32, atol=INT8_ATOL, rtol=0)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_gptq_round_beats_nearest_on_the_layer_outputs_and_keeps_the_grid():
    from hfcompress.methods.quantization.rounding import gptq_round

    torch.manual_seed(0)
    # Correlated inputs with a non-zero mean, as LayerNorm/GELU outputs are.
    x = (torch.randn(4000, 48) @ torch.randn(48, 48) * 0.3 + torch.randn(48)).double()
    weight = torch.randn(24, 48)
    for qmax in (63, 64, 127):
        q, scale = gptq_round(weight, x.T @ x / len(x), qmax)
        nearest = torch.clamp(torch.round(weight.double() / scale[:, None]), -qmax, qmax)
        torch.testing.assert_close(scale, weight.double().abs().amax(1) / qmax)
        assert torch.equal(q, q.round()) and q.abs().max() <= qmax
        assert torch.equal(q.abs().amax(1), torch.full((24,), float(qmax), dtype=q.dtype))  # the grid's end is kept

        def error(ints):
            return (x @ (ints * scale[:, None] - weight.double()).T).pow(2).mean().item()
        assert error(q) < 0.75 * error(nearest)


def _calibration(n=4):
    return [{**tiny_inputs(batch=4, length=12, seed=seed), "labels": torch.tensor([0, 1, 0, 1])} for seed in range(n)]


def test_gptq_torch_backend_reloads_and_needs_data(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    fp32 = model(**inputs).logits
    compress(model, DynamicQuantConfig(rounding="gptq", max_batches=4), dataloader=_calibration())
    int8 = model(**inputs).logits
    torch.testing.assert_close(int8, fp32, atol=INT8_ATOL, rtol=0)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded(**inputs).logits, int8)
    assert get_record(loaded).steps[-1]["config"]["rounding"] == "gptq"
    with pytest.raises(ValueError, match="dataloader="):
        compress(tiny_model("bert"), DynamicQuantConfig(rounding="gptq"))
    with pytest.raises(ValueError, match="rounding must be one of"):
        DynamicQuantConfig(rounding="stochastic")


def test_gptq_onnx_keeps_our_integers(tmp_path):
    import onnx
    from onnx import numpy_helper

    from hfcompress.methods.quantization.rounding import gptq_linears

    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = export_onnx(model, tmp_path / "onnx", int8=True, rounding="gptq", dataloader=_calibration())
    runner = OnnxSequenceClassifier.from_pretrained(folder, threads=1)
    torch.testing.assert_close(runner(**inputs).logits, model(**inputs).logits, atol=INT8_ATOL, rtol=0)
    name = "bert.encoder.layer.1.intermediate.dense"
    ours = gptq_linears(model, [name], _calibration(), qmax=64)[name][0].numpy().T  # ONNX MatMul weights are (in, out)
    stored = [numpy_helper.to_array(init) for init in onnx.load(str(folder / "model.onnx")).graph.initializer
              if init.name.endswith("_quantized")]
    assert any(w.shape == ours.shape and (w.astype(int) == ours.astype(int)).all() for w in stored)
    with pytest.raises(ValueError, match="per_channel"):
        export_onnx(model, tmp_path / "x", int8=True, per_channel=False, rounding="gptq", dataloader=_calibration())
    with pytest.raises(ValueError, match="dataloader="):
        export_onnx(model, tmp_path / "x", int8=True, rounding="gptq")


def test_gptq_callback_calibrates_on_the_training_batches(tmp_path):
    from hfcompress import DynamicQuantCallback

    model = tiny_model("bert", hidden=64, ffn=128)
    rows = [{"input_ids": torch.randint(5, 120, (10,)), "attention_mask": torch.ones(10, dtype=torch.long),
             "labels": torch.tensor(i % 3)} for i in range(16)]
    args = TrainingArguments(str(tmp_path / "r"), max_steps=1, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no")
    Trainer(model=model, args=args, train_dataset=rows,
            callbacks=[DynamicQuantCallback(DynamicQuantConfig(rounding="gptq", max_batches=2))]).train()
    assert isinstance(model.bert.encoder.layer[1].output.dense, Int8DynamicLinear)
    assert get_record(model).steps[-1]["config"]["rounding"] == "gptq"


def test_smoothing_factors_follow_the_formula_and_skip_dead_features():
    from hfcompress.methods.quantization.smoothing import smoothing_factors

    weight = torch.tensor([[1.0, -4.0, 0.0, 2.0], [0.5, 1.0, 0.0, -8.0]])
    peaks = torch.tensor([9.0, 1.0, 3.0, 0.0])
    factors = smoothing_factors(weight, peaks, alpha=0.5)
    torch.testing.assert_close(factors[:2], torch.tensor([(9.0 / 1.0) ** 0.5, (1.0 / 4.0) ** 0.5]))
    assert factors[2] == 1 and factors[3] == 1  # no weight / never fires: left alone


def _outlier_model():
    """A tiny BERT whose FFN inputs carry two features ~40x larger than the rest, as BERT's LayerNorm outputs do."""
    model = tiny_model("bert", hidden=64, ffn=128)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.output.LayerNorm.weight[:2] *= 40
            layer.intermediate.dense.weight[:, :2] /= 40  # same float function of the other features' scale
    return model


def test_smoothing_keeps_float_outputs_and_cuts_int8_error(tmp_path):
    from hfcompress.methods.quantization.smoothing import InputSmoothedLinear, smooth_linears

    model = _outlier_model()
    inputs = tiny_inputs(batch=4, length=12, seed=7)
    fp32 = model(**inputs).logits
    smoothed = copy.deepcopy(model)
    ffn = [f"bert.encoder.layer.{i}.{role}" for i in range(len(model.bert.encoder.layer))
           for role in ("intermediate.dense", "output.dense")]
    smooth_linears(smoothed, ffn, _calibration(), alpha=0.8)
    assert isinstance(smoothed.bert.encoder.layer[0].intermediate.dense, InputSmoothedLinear)
    torch.testing.assert_close(smoothed(**inputs).logits, fp32, atol=1e-5, rtol=0)

    def int8_error(config):
        quantized = compress(copy.deepcopy(model), config, dataloader=_calibration())
        return (quantized(**inputs).logits - fp32).abs().mean().item(), quantized

    plain, _ = int8_error(DynamicQuantConfig(rounding="nearest"))
    smooth, quantized = int8_error(DynamicQuantConfig(smoothing=0.8))
    assert smooth < 0.7 * plain
    record = get_record(quantized).steps[-1]
    assert record["config"]["smoothing"] == 0.8 and sorted(record["shape"]["smoothed"]) == sorted(ffn)
    quantized.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.bert.encoder.layer[0].intermediate.dense.input_smoothing is not None
    assert loaded.bert.encoder.layer[0].attention.self.query.input_smoothing is None
    assert torch.equal(loaded(**inputs).logits, quantized(**inputs).logits)


def test_smoothing_with_gptq_and_bad_settings(tmp_path):
    model = tiny_model("bert", hidden=64, ffn=128)
    inputs = tiny_inputs()
    fp32 = model(**inputs).logits
    config = DynamicQuantConfig(smoothing=0.8, rounding="gptq", max_batches=2)
    assert config.requires_dataloader and DynamicQuantConfig(smoothing=0.5).requires_dataloader
    compress(model, config, dataloader=_calibration())
    torch.testing.assert_close(model(**inputs).logits, fp32, atol=INT8_ATOL, rtol=0)
    for alpha in (0, 1.5, True, "0.8"):
        with pytest.raises(ValueError, match="migration strength"):
            DynamicQuantConfig(smoothing=alpha)
    with pytest.raises(ValueError, match="dataloader="):
        compress(tiny_model("bert"), DynamicQuantConfig(smoothing=0.8))
    with pytest.raises(ValueError, match="none of them is a Linear"):
        compress(tiny_model("bert"), DynamicQuantConfig(smoothing=0.8, modules=["attention"]), dataloader=_calibration())


@pytest.mark.parametrize("optimize", [True, False])
def test_onnx_smoothing_adds_one_mul_per_ffn_matmul_and_stays_close(tmp_path, optimize):
    model = _outlier_model()
    inputs = tiny_inputs()
    fp32 = model(**inputs).logits
    default = _quiet_export(model, tmp_path / "default", int8=True, optimize=optimize)
    smoothed = _quiet_export(model, tmp_path / "smooth", int8=True, optimize=optimize, smoothing=0.8, rounding="gptq",
                             dataloader=_calibration())
    muls = lambda folder: _count_nodes(folder, lambda node, _: node.op_type == "Mul")  # noqa: E731
    fused = lambda folder: _count_nodes(folder, lambda node, _: node.op_type in ("QAttention", "BiasGelu", "SkipLayerNormalization"))  # noqa: E731
    assert muls(smoothed) - muls(default) == 2 * 4  # FFN in + out, 4 layers
    assert fused(smoothed) == fused(default)
    assert (fused(default) > 0) == optimize  # ONNX Runtime's fusions survive the Mul
    assert json.loads((smoothed / "config.json").read_text())["hfcompress_onnx"]["smoothing"] == 0.8

    def error(folder):
        return (OnnxSequenceClassifier.from_pretrained(folder, threads=1)(**inputs).logits - fp32).abs().mean().item()
    assert error(smoothed) < error(default)
    with pytest.raises(ValueError, match="neither ffn_per_token"):
        export_onnx(model, tmp_path / "x", int8=True, smoothing=0.8, ffn_per_token=True, dataloader=_calibration())
    with pytest.raises(ValueError, match="dataloader="):
        export_onnx(model, tmp_path / "x", int8=True, smoothing=0.8)
    factorized = compress(tiny_model("bert", hidden=64, ffn=128), hfcompress.LowRankConfig(rank=8, targets=["ffn"]))
    with pytest.raises(ValueError, match="none of them is a Linear"):
        export_onnx(factorized, tmp_path / "x", int8=True, smoothing=0.8, dataloader=_calibration())


def test_int8_embeddings_run_under_inference_mode_and_after_it():
    from hfcompress import DynamicQuantConfig, compress

    model = compress(tiny_model("bert"), DynamicQuantConfig(embeddings=True))
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
    with torch.inference_mode():  # the float view made here is an inference tensor (no version counter)
        first = model(**inputs).logits
        second = model(**inputs).logits
    after = model(**inputs).logits  # grad mode again: the inference-mode copy must not be used here
    assert torch.equal(first, expected) and torch.equal(second, expected) and torch.equal(after.detach(), expected)


def test_kernel_probe_answers_no_and_says_why_when_the_kernel_raises(monkeypatch):
    import hfcompress.cpu as cpu

    def broken(*args, **kwargs):
        raise RuntimeError("no int8 engine")

    monkeypatch.setattr(torch.ops.quantized, "linear_dynamic", broken, raising=False)
    cpu.full_range_int8_kernels.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no int8 engine"):
            assert cpu.full_range_int8_kernels() is False
    finally:
        monkeypatch.undo()
        cpu.full_range_int8_kernels.cache_clear()


def test_kernel_probe_agrees_with_the_instructions_at_every_shape():
    # VNNI accumulates in 32 bits at any shape; without it the pair sums saturate at any shape.
    if os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS"):
        pytest.skip("fbgemm's instructions are capped in this environment")
    assert full_range_int8_kernels() == (int8_isa() in VNNI_ISAS)


def test_reload_says_so_when_its_activation_width_differs_from_the_quantizing_machine(tmp_path, caplog):
    model = tiny_model("bert", hidden=64, ffn=128)
    compress(model, DynamicQuantConfig(weight_bits=8))
    here = model.bert.encoder.layer[0].output.dense.activation_bits
    assert get_record(model).steps[-1]["info"]["activation_bits"] == here
    model.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="hfcompress"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert "activations" not in caplog.text  # same machine, same width: nothing to say
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"]["steps"][0]["info"]["activation_bits"] = 15 - here  # the other width
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING", logger="hfcompress"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert f"ran {15 - here}-bit activations" in caplog.text and f"give {here}-bit" in caplog.text
