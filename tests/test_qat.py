"""Quantization-aware fine-tuning: int8 simulated in training exactly as the kernels round, then converted."""

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import hfcompress
from hfcompress import CompressionTrainer, DistillationConfig, QuantAwareCallback, QuantAwareConfig, get_record
from hfcompress.methods.quantization import Int8DynamicLinear, simulate_int8, stop_simulating
from hfcompress.methods.quantization.layers import attach_fake_quant, weight_qmax
from hfcompress.methods.quantization.model import activation_bits, resolved_weight_bits

from .conftest import tiny_inputs, tiny_model


def _rows(count=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 110, (count, 12), generator=generator)
    labels = torch.randint(0, 3, (count,), generator=generator)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": labels[i]}
            for i in range(count)]


def _args(tmp_path, steps=4, **extra):
    return TrainingArguments(str(tmp_path / "run"), max_steps=steps, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3, **extra)


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_simulated_linear_computes_what_the_int8_kernel_computes(weight_bits):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 10, 64) * 2 + 0.5
    config = QuantAwareConfig(weight_bits=weight_bits)
    kernel = Int8DynamicLinear.from_linear(linear, weight_bits=weight_bits)
    simulated = copy.deepcopy(linear)
    attach_fake_quant(simulated, weight_qmax(weight_bits, "torch"), activation_bits(config))
    assert kernel.activation_bits == activation_bits(config)
    with torch.no_grad():
        float_out, int8_out, simulated_out = linear(x), kernel(x), simulated(x)
    rounding_error = (int8_out - float_out).abs().max()
    assert rounding_error > 1e-3  # int8 differs from float visibly ...
    assert (simulated_out - int8_out).abs().max() < 0.02 * rounding_error  # ... and the simulation matches int8


def test_gradients_pass_the_rounding_and_state_dict_names_stay():
    model = tiny_model("bert")
    names = list(model.state_dict())
    attached = simulate_int8(model, QuantAwareConfig())
    assert attached and list(model.state_dict()) == names  # a checkpoint mid-training is a float checkpoint
    loss = model(**tiny_inputs(), labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    grad = model.get_submodule(attached[0]).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    copied = copy.deepcopy(model)  # the simulation survives a deepcopy (teachers, best-model copies)
    with torch.no_grad():
        torch.testing.assert_close(copied(**tiny_inputs()).logits, model(**tiny_inputs()).logits)
    assert stop_simulating(model) == len(attached) and stop_simulating(model) == 0


def test_plain_trainer_fine_tunes_with_int8_simulated_then_converts_and_reloads(tmp_path):
    model = tiny_model("bert")
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_rows(),
                      callbacks=[QuantAwareCallback(QuantAwareConfig(weight_bits=7))])
    trainer.train()
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, Int8DynamicLinear)
    steps = get_record(model).steps
    assert [s["method"] for s in steps] == ["qat", "int8_dynamic"] and steps[0]["info"]["steps"] == 4
    model.save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert torch.equal(loaded(**tiny_inputs()).logits, model.eval()(**tiny_inputs()).logits)
    card = str(hfcompress.hub.build_model_card(tmp_path / "out"))
    assert "quantization-aware fine-tuning" in card and "4 steps" in card


def test_with_distillation_from_the_float_model_and_the_onnx_route(tmp_path):
    model = tiny_model("bert")
    teacher = copy.deepcopy(model).eval()
    trainer = CompressionTrainer(model=model, args=_args(tmp_path), train_dataset=_rows(), teacher=teacher,
                                 distillation=DistillationConfig(),
                                 compression=[QuantAwareConfig(backend="onnxruntime", modules=["attention", "ffn_in"])])
    trainer.train()
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear  # float, for the ONNX export
    assert "forward" not in model.bert.encoder.layer[0].attention.self.query.__dict__
    assert [s["method"] for s in get_record(model).steps] == ["qat"]
    assert resolved_weight_bits(QuantAwareConfig(backend="onnxruntime")) == 7
    from hfcompress import OnnxSequenceClassifier, export_onnx

    export_onnx(model, tmp_path / "onnx", int8=True, keep_ffn_out_float=True)
    onnx_model = OnnxSequenceClassifier.from_pretrained(tmp_path / "onnx")
    inputs = tiny_inputs()
    with torch.no_grad():
        gap = (torch.as_tensor(onnx_model(**inputs).logits) - model.eval()(**inputs).logits).abs().max()
    assert gap < 0.1


def test_bad_settings_and_recipes():
    from hfcompress.pipeline import RecipeError, load_recipe, validate_recipe

    with pytest.raises(ValueError, match="backend"):
        QuantAwareConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="weight_bits"):
        QuantAwareConfig(weight_bits=4)
    with pytest.raises(ValueError, match="modules"):
        QuantAwareConfig(modules=["everything"])
    recipe = {"task": "sst2", "stages": [{"stage": "train", "methods": [{"method": "qat"}]},
                                         {"stage": "train", "methods": []}]}
    with pytest.raises(RecipeError, match="int8 models do not train"):
        validate_recipe(load_recipe(recipe))
    recipe["stages"][0]["methods"][0]["backend"] = "onnxruntime"
    validate_recipe(load_recipe(recipe))


def test_trainer_evaluates_and_predicts_a_reloaded_int8_model_and_refuses_to_train_it(tmp_path):
    from hfcompress import DynamicQuantConfig, compress

    model = compress(tiny_model("bert"), DynamicQuantConfig())
    assert not model.training
    model.save_pretrained(tmp_path / "int8")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "int8")
    trainer = Trainer(model=reloaded, args=_args(tmp_path, per_device_eval_batch_size=8), train_dataset=_rows(),
                      eval_dataset=_rows(16, seed=1))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["eval_loss"] > 0
    predictions = trainer.predict(_rows(8, seed=2))
    assert predictions.predictions.shape == (8, 3)
    with pytest.raises(RuntimeError, match="QuantAwareConfig"):
        trainer.train()


def test_static_onnx_int8_round_trips_and_needs_calibration_data(tmp_path):
    from hfcompress import OnnxSequenceClassifier, export_onnx

    model = tiny_model("bert")
    batches = [{k: v for k, v in tiny_inputs(batch=4, seed=s).items()} for s in range(4)]
    folder = export_onnx(model, tmp_path / "static", int8="static", dataloader=batches)
    onnx_model = OnnxSequenceClassifier.from_pretrained(folder)
    inputs = tiny_inputs(seed=9)
    with torch.no_grad():
        reference = model(**inputs).logits
    gap = (torch.as_tensor(onnx_model(**inputs).logits) - reference).abs().max()
    assert gap < 0.1 * reference.abs().max() + 1e-3
    import json
    import onnx

    assert json.loads((folder / "config.json").read_text())["hfcompress_onnx"]["int8"] == "static"
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # the QDQ format
    with pytest.raises(ValueError, match="calibrates activation scales on data"):
        export_onnx(model, tmp_path / "never", int8="static")
    with pytest.raises(ValueError, match="int8 must be"):
        export_onnx(model, tmp_path / "never", int8="int4")


def test_accuracy_guard_keeps_a_planted_bad_layer_in_float(tmp_path):
    from hfcompress import DynamicQuantConfig, compress

    model = tiny_model("bert", hidden=64, ffn=128)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)  # units that matter unequally, predictions that int8 can change
        layer = model.bert.encoder.layer[2]
        # Neuron 0 of layer 2's FFN fires at 1000 but its output weights are zero: the float model does not see
        # it, while the FFN output linear's per-tensor int8 input grid becomes ~4 wide and rounds the rest to 0.
        layer.intermediate.dense.bias[0] = 1000.0
        layer.output.dense.weight[:, 0] = 0.0
    batches = [{k: v for k, v in tiny_inputs(batch=16, length=12, seed=s).items()} for s in range(4)]
    planted = "bert.encoder.layer.2.output.dense"
    guarded = compress(copy.deepcopy(model), DynamicQuantConfig(max_drop=2.0), dataloader=batches)
    step = get_record(guarded).steps[-1]
    assert step["info"]["kept_float"][0] == planted and planted not in step["shape"]["linears"]
    assert step["info"]["reference"] == "agreement with the float model"  # the default: training rows say little
    assert step["info"]["estimated_drop"] <= 2.0 < step["info"]["estimated_drop_all_int8"]
    # The estimate is the measured drop plus one standard error of the paired difference (rows are noisy).
    info = step["info"]
    assert info["estimated_drop"] == pytest.approx(info["measured_drop"] + info["standard_error"], abs=2e-3)
    assert isinstance(guarded.get_submodule(planted), nn.Linear)
    guarded.save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert isinstance(loaded.get_submodule(planted), nn.Linear)
    with torch.no_grad():
        assert torch.equal(loaded(**batches[0]).logits, guarded(**batches[0]).logits)
    card = str(hfcompress.hub.build_model_card(tmp_path / "out"))
    assert "kept in float by the accuracy guard" in card and planted in card
    with pytest.raises(ValueError, match="needs data"):
        compress(copy.deepcopy(model), DynamicQuantConfig(max_drop=0.5))
    # Labels equal to the float model's predictions: judged on labels, the guard must keep the same linears.
    with torch.no_grad():
        labelled = [{**b, "labels": model(**b).logits.argmax(-1)} for b in batches]
    on_labels = compress(copy.deepcopy(model), DynamicQuantConfig(max_drop=2.0, reference="labels"), dataloader=labelled)
    judged = get_record(on_labels).steps[-1]["info"]
    assert judged["reference"] == "labels" and judged["kept_float"] == info["kept_float"]
    assert judged["measured_drop"] == info["measured_drop"]
    unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    with pytest.raises(ValueError, match='reference="labels" judges the int8 drop on the rows\' labels'):
        compress(copy.deepcopy(model), DynamicQuantConfig(max_drop=2.0, reference="labels"), dataloader=unlabelled)
    with pytest.raises(ValueError, match="reference must be one of"):
        DynamicQuantConfig(max_drop=2.0, reference="label")
    with pytest.raises(ValueError, match="max_drop"):
        DynamicQuantConfig(max_drop=-1)


def test_the_guard_estimate_adds_the_standard_error_of_the_paired_difference():
    from hfcompress.methods.quantization.guard import _paired_drop

    reference = torch.tensor([True] * 90 + [False] * 10)
    assert _paired_drop(reference, reference.clone()) == (0.0, 0.0)
    quantized = reference.clone()
    quantized[:4] = False  # 4 rows lost
    quantized[95] = True  # 1 gained
    mean, error = _paired_drop(reference, quantized)
    assert mean == pytest.approx(3.0)
    assert error == pytest.approx(100 * (5 - 9 / 100) ** 0.5 / 100)
