"""Dynamic int8 benchmark: ours (torch, ONNX Runtime) against the plain recipes, same run.

For each task: the fp32 teacher; plain ``torch.ao.quantization.quantize_dynamic`` (its default
per-tensor qconfig); plain ONNX Runtime ``quantize_dynamic`` on an unoptimized export; ours with
the torch backend (per-channel int8 linears, int8-stored word embedding, saves and reloads via
``from_pretrained``) and with ONNX Runtime (per-channel int8, 7-bit weight range), both at the
defaults this CPU gets (``kernels.py``: 8-bit weights and an unfused ONNX graph where the CPU has
VNNI, 7-bit weights and ONNX Runtime's transformer fusions where it does not), and each with the
other choice. Ours (onnxruntime) with per-token FFN activations (``ffn_per_token=True``) shows
what one activation scale per token buys; ours with ``rounding="gptq"`` (both backends) what
error-compensated weight rounding buys; ours with ``smoothing=0.8`` (SmoothQuant on the FFN
linears, alone and with GPTQ) what moving the FFN inputs' outlier features into the weights buys.
After the table, the contenders of the speed targets are timed again on their own as per-round
paired ratios (``paired_latency``), which is what the "never slower" verdicts use.
Dev scores are computed twice: in batches of 64 (padded) and one sentence per call (batch 1,
the setting of the latency target): dynamic int8 activation scales span the whole batch, so
the batch changes the result. The
accuracy guard (``max_drop=0.3``, estimated on training rows the teacher never saw where the task has
any) and static ONNX Runtime int8 (QDQ, calibrated on training rows) have rows of their own. When
benchmarks/qat.py has run, its first seed's QAT models (torch and ONNX Runtime, cache/qat/<task>/) are
timed and scored here too; when a Theseus successor from benchmarks/theseus.py is cached, it and its
int8 version are.

Timing: after the main table, every model is timed again against fp32 (and ours against the plain
recipe) as per-round paired ratios, and that whole paired table is repeated ``--repeats`` times (3 by
default). A verdict "never slower than plain" holds when the median over the repeats of the paired
median speed ratio (plain time / ours) is >= 0.97.

    python benchmarks/quantization.py --tasks sst2 mrpc --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets
from transformers import AutoModelForSequenceClassification

from common import CACHE, RESULTS, TASK_SETUPS, get_teacher, guard_rows, load_data, shown_path, slug, train_batches

from hfcompress import DynamicQuantConfig, OnnxSequenceClassifier, compress, export_onnx
from hfcompress.benchmark import (add_ratios, benchmark_rows, format_table, hardware, paired_latency, predict,
                                  weights_size_bytes, write_results)
from hfcompress.data import get_task
from hfcompress.data.metrics import task_metrics
from hfcompress.integration import get_record
from hfcompress.methods.quantization import Int8DynamicLinear
from hfcompress.methods.quantization.kernels import default_ort_fusions, default_weight_bits

# (ours, the plain recipe a user would otherwise pick): the "never slower" comparisons.
PAIRED = [("hfcompress int8 (torch)", "plain torch.ao quantize_dynamic"),
          ("hfcompress int8 (torch), SmoothQuant + GPTQ", "plain torch.ao quantize_dynamic"),
          ("hfcompress int8 (onnxruntime)", "plain ONNX Runtime quantize_dynamic"),
          ("hfcompress int8 (onnxruntime), SmoothQuant + GPTQ", "plain ONNX Runtime quantize_dynamic")]
NEVER_SLOWER = 0.97  # plain time / ours, median over the repeats: the "never slower than plain" bar


def repeated_paired(models: dict, pairs: list[tuple[str, str]], batch_size: int, rounds: int, repeats: int) -> dict:
    """``paired_latency`` of the whole table ``repeats`` times; per pair, the median over repeats of each repeat's
    median per-round time ratio, with every repeat's median and 95% interval kept."""
    runs = [paired_latency(models, pairs, batch_size=batch_size, rounds=rounds, seed=r) for r in range(repeats)]
    ratios = {}
    for key in runs[0]["ratios"]:
        medians = [run["ratios"][key]["median"] for run in runs]
        ratios[key] = {"median": statistics.median(medians), "repeat_medians": medians,
                       "repeat_ci95": [run["ratios"][key]["ci95"] for run in runs],
                       # the spread of the repeats' medians: what a verdict has to survive
                       "ci95": [min(medians), max(medians)]}
    return {"batch_size": batch_size, "seq_len": runs[0]["seq_len"], "rounds": rounds, "repeats": repeats,
            "median_ms": {name: statistics.median(run["median_ms"][name] for run in runs) for name in models},
            "ratios": ratios}


def pickled_size(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def saves_and_reloads(model, inputs) -> bool:
    """Does save_pretrained + from_pretrained give back the same outputs?"""
    with tempfile.TemporaryDirectory() as folder:
        try:
            model.save_pretrained(folder)
            loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        except Exception:  # noqa: BLE001 - any failure means "does not round-trip"
            return False
        with torch.inference_mode():
            return torch.allclose(loaded(**inputs).logits, model(**inputs).logits, atol=1e-5)


def run_task(task: str, work: Path, repeats: int = 3, successor: str | None = None) -> None:
    setup = TASK_SETUPS[task]
    spec = get_task(task)
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    dev = data["validation"]
    probe = {k: torch.tensor([dev[0][k]]) for k in ("input_ids", "attention_mask")}
    entries = [{"name": "fp32", "model": teacher, "extra": {"roundtrip": True}}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        plain_torch = torch.ao.quantization.quantize_dynamic(copy.deepcopy(teacher), {torch.nn.Linear},
                                                             dtype=torch.qint8)
    entries.append({"name": "plain torch.ao quantize_dynamic", "model": plain_torch,
                    "size_bytes": pickled_size(plain_torch),
                    "extra": {"roundtrip": saves_and_reloads(plain_torch, probe),
                              "size_note": "torch.save of the state_dict (pickled packed params)"}})
    plain_ort_dir = export_onnx(teacher, work / f"{task}-plain-ort", int8=True, optimize=False, per_channel=False,
                                weight_bits=8)
    entries.append({"name": "plain ONNX Runtime quantize_dynamic",
                    "model": OnnxSequenceClassifier.from_pretrained(plain_ort_dir),
                    "size_bytes": weights_size_bytes(plain_ort_dir)})
    # Ours at its defaults for this CPU (weight bits, ONNX Runtime fusions: kernels.py), and each with the
    # other choice, which shows what the CPU-dependent default buys here.
    weight_bits, fusions = default_weight_bits(), default_ort_fusions(int8=True)
    ours = compress(copy.deepcopy(teacher), DynamicQuantConfig(backend="torch", embeddings=True))
    entries.append({"name": "hfcompress int8 (torch)", "model": ours,
                    "extra": {"roundtrip": saves_and_reloads(ours, probe), "weight_bits": weight_bits}})
    other_bits = 7 if weight_bits == 8 else 8
    ours_other_bits = compress(copy.deepcopy(teacher), DynamicQuantConfig(backend="torch", embeddings=True,
                                                                          weight_bits=other_bits))
    activation_bits = next(m for m in ours_other_bits.modules() if isinstance(m, Int8DynamicLinear)).activation_bits
    entries.append({"name": f"hfcompress int8 (torch), {other_bits}-bit weights / {activation_bits}-bit activations",
                    "model": ours_other_bits, "extra": {"roundtrip": saves_and_reloads(ours_other_bits, probe)}})
    ours_ort_dir = export_onnx(teacher, work / f"{task}-ours-ort", int8=True)
    entries.append({"name": "hfcompress int8 (onnxruntime)", "model": OnnxSequenceClassifier.from_pretrained(ours_ort_dir),
                    "size_bytes": weights_size_bytes(ours_ort_dir), "extra": {"fused_graph": fusions}})
    other_graph_dir = export_onnx(teacher, work / f"{task}-other-graph-ort", int8=True, optimize=not fusions)
    entries.append({"name": f"hfcompress int8 (onnxruntime), {'unfused' if fusions else 'fused'} graph",
                    "model": OnnxSequenceClassifier.from_pretrained(other_graph_dir),
                    "size_bytes": weights_size_bytes(other_graph_dir)})
    # The accuracy knob: the FFN output linears (fed by GELU, widest activation range) stay float.
    ours_mixed = compress(copy.deepcopy(teacher), DynamicQuantConfig(backend="torch", modules=["attention", "ffn_in"],
                                                                      embeddings=True))
    entries.append({"name": "hfcompress int8 (torch), FFN output float", "model": ours_mixed,
                    "extra": {"roundtrip": saves_and_reloads(ours_mixed, probe)}})
    per_token_ort_dir = export_onnx(teacher, work / f"{task}-per-token-ort", int8=True, ffn_per_token=True)
    entries.append({"name": "hfcompress int8 (onnxruntime), per-token FFN activations",
                    "model": OnnxSequenceClassifier.from_pretrained(per_token_ort_dir),
                    "size_bytes": weights_size_bytes(per_token_ort_dir)})
    # GPTQ rounding, calibrated on 32 train batches drawn from rows the fidelity check below does not use.
    calibration_rows = data["train"].shuffle(seed=1).select(range(1000, data["train"].num_rows))
    calibration = train_batches(calibration_rows, tokenizer, seed=0)
    ours_gptq = compress(copy.deepcopy(teacher), DynamicQuantConfig(backend="torch", embeddings=True, rounding="gptq",
                                                                     max_batches=32), dataloader=calibration)
    entries.append({"name": "hfcompress int8 (torch), GPTQ rounding", "model": ours_gptq,
                    "extra": {"roundtrip": saves_and_reloads(ours_gptq, probe)}})
    gptq_ort_dir = export_onnx(teacher, work / f"{task}-gptq-ort", int8=True, rounding="gptq", dataloader=calibration,
                               max_batches=32)
    entries.append({"name": "hfcompress int8 (onnxruntime), GPTQ rounding",
                    "model": OnnxSequenceClassifier.from_pretrained(gptq_ort_dir),
                    "size_bytes": weights_size_bytes(gptq_ort_dir)})
    # SmoothQuant (alpha 0.8, chosen on SST-2 KL among 0.5-1.0) on the FFN linears, alone and with GPTQ.
    smooth_ort_dir = export_onnx(teacher, work / f"{task}-smooth-ort", int8=True, smoothing=0.8, dataloader=calibration,
                                 max_batches=32)
    entries.append({"name": "hfcompress int8 (onnxruntime), SmoothQuant",
                    "model": OnnxSequenceClassifier.from_pretrained(smooth_ort_dir),
                    "size_bytes": weights_size_bytes(smooth_ort_dir)})
    smooth_gptq_ort_dir = export_onnx(teacher, work / f"{task}-smooth-gptq-ort", int8=True, smoothing=0.8,
                                      rounding="gptq", dataloader=calibration, max_batches=32)
    entries.append({"name": "hfcompress int8 (onnxruntime), SmoothQuant + GPTQ",
                    "model": OnnxSequenceClassifier.from_pretrained(smooth_gptq_ort_dir),
                    "size_bytes": weights_size_bytes(smooth_gptq_ort_dir)})
    ours_smooth_gptq = compress(copy.deepcopy(teacher), DynamicQuantConfig(
        backend="torch", embeddings=True, smoothing=0.8, rounding="gptq", max_batches=32), dataloader=calibration)
    entries.append({"name": "hfcompress int8 (torch), SmoothQuant + GPTQ", "model": ours_smooth_gptq,
                    "extra": {"roundtrip": saves_and_reloads(ours_smooth_gptq, probe)}})
    guard_data, unseen = guard_rows(setup, tokenizer, data)
    guard_note = "training rows the teacher never saw" if unseen else "training rows"
    guarded = compress(copy.deepcopy(teacher), DynamicQuantConfig(backend="torch", embeddings=True, max_drop=0.3,
                                                                  max_batches=32,
                                                                  reference="labels" if unseen else "agreement"),
                       dataloader=train_batches(guard_data, tokenizer, 1))
    entries.append({"name": "hfcompress int8 (torch), accuracy guard max_drop 0.3", "model": guarded,
                    "extra": {"roundtrip": saves_and_reloads(guarded, probe), "guard_rows": guard_note,
                              "guard": get_record(guarded).steps[-1]["info"]}})
    # A fresh loader over the same rows: `calibration` has been drawn from already, so its next shuffle differs.
    static_dir = export_onnx(teacher, work / f"{task}-static-ort", int8="static", max_batches=32,
                             dataloader=train_batches(calibration_rows, tokenizer, seed=0))
    entries.append({"name": "hfcompress int8 (onnxruntime), static QDQ", "model": OnnxSequenceClassifier.from_pretrained(static_dir),
                    "size_bytes": weights_size_bytes(static_dir)})
    # QAT (benchmarks/qat.py's first seed, 120 KD steps after the teacher), when that run kept its models.
    qat_dir = CACHE / "qat" / task
    qat_torch = sorted(qat_dir.glob(slug("QAT, int8 (torch), seed") + "*"))
    if qat_torch and (qat_torch[0] / "config.json").is_file():
        model = AutoModelForSequenceClassification.from_pretrained(qat_torch[0]).eval()
        entries.append({"name": "hfcompress QAT int8 (torch)", "model": model,
                        "extra": {"roundtrip": saves_and_reloads(model, probe), "model_dir": shown_path(qat_torch[0])}})
    qat_ort = sorted(qat_dir.glob(f"{task}-qat-*"))
    if qat_ort and (qat_ort[0] / "config.json").is_file():
        entries.append({"name": "hfcompress QAT int8 (onnxruntime)", "model": OnnxSequenceClassifier.from_pretrained(qat_ort[0]),
                        "size_bytes": weights_size_bytes(qat_ort[0]), "extra": {"model_dir": shown_path(qat_ort[0])}})
    successor_dir = Path(successor) if successor else CACHE / "theseus" / task / "theseus_constant"
    if (successor_dir / "model.safetensors").is_file():
        successor = AutoModelForSequenceClassification.from_pretrained(successor_dir).eval()
        entries.append({"name": "theseus 3 layers (fp32)", "model": successor})
        successor_int8 = compress(copy.deepcopy(successor), DynamicQuantConfig(backend="torch", embeddings=True))
        entries.append({"name": "theseus 3 layers + hfcompress int8 (torch)", "model": successor_int8,
                        "extra": {"roundtrip": saves_and_reloads(successor_int8, probe)}})
    # Fidelity: how many predictions int8 changes, on dev plus 1000 train rows, one row per call
    # (batch 1, no padding). Dev scores move by a few examples with any change of rounding (MRPC:
    # 0.25 F1 each); flips and KL do not.
    fidelity_rows = concatenate_datasets([dev, data["train"].shuffle(seed=1).select(range(1000)).select_columns(dev.column_names)])
    reference = torch.tensor(predict(teacher, fidelity_rows, batch_size=1))
    labels = np.asarray(dev["label"])
    for entry in entries:
        logits = reference if entry["model"] is teacher else torch.tensor(predict(entry["model"], fidelity_rows, batch_size=1))
        if logits.shape != reference.shape:
            continue
        entry.setdefault("extra", {}).update({
            "score_bs1": task_metrics(task, logits[: dev.num_rows].numpy(), labels)[spec.main_metric],
            "flips_vs_fp32": (logits.argmax(-1) != reference.argmax(-1)).float().mean().item(),
            "kl_vs_fp32": torch.nn.functional.kl_div(logits.log_softmax(-1), reference.log_softmax(-1),
                                                     log_target=True, reduction="batchmean").item()})
    rows = benchmark_rows(entries, eval_dataset=dev, task=task, rounds={1: 60, 32: 10})
    add_ratios(rows, "fp32")
    # "Never slower than the plain recipe" and the speedups over fp32 are judged here: per-round ratios
    # (medians of a 20-model rotation move 5-10% run to run), the whole table repeated.
    models = {e["name"]: e["model"] for e in entries}
    pairs = [(ours_name, plain_name) for ours_name, plain_name in PAIRED if ours_name in models]
    pairs += [(name, "fp32") for name in models if name != "fp32"]
    paired = [repeated_paired(models, pairs, batch, count, repeats) for batch, count in ((1, 200), (32, 20))]
    payload = {
        "benchmark": "quantization",
        "task": task,
        "metric": spec.main_metric,
        "model": "all-MiniLM-L6-v2 fine-tuned (benchmarks/common.py teacher)",
        "teacher": teacher_info,
        "data": {"dev_rows": dev.num_rows, "max_length": setup.max_length,
                 "fidelity_rows": fidelity_rows.num_rows,
                 "fidelity": "dev + 1000 shuffled train rows (seed 1), one row per call",
                 "score_bs1": "dev score with one row per call; the main score uses padded batches of 64"},
        "rows": rows,
        "paired": paired,
        "never_slower_bar": NEVER_SLOWER,
        "defaults_here": {"weight_bits": weight_bits, "ort_fusions": fusions},
        "hardware": hardware(),
        "latency": "all models timed in alternation, median of 60 rounds (batch 1) / 10 rounds (batch 32) after 5 "
                   "warm-up passes each, each pass 20 ms after the previous one ended, seq 128, 2 threads (torch) / "
                   "2 intra-op threads (ORT); then every model again in alternation, 200 / 20 rounds, per-round ratios against "
                   f"fp32 and ours against plain, that whole paired table {repeats} times (`paired`: medians over the "
                   "repeats, each repeat's median kept)",
    }
    write_results(payload, RESULTS / f"quantization_{task}.json", RESULTS / f"quantization_{task}.md")
    print(format_table(rows, spec.main_metric), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the whole paired timing table")
    parser.add_argument("--successor", default=None, help="a Theseus successor folder for the first task (default: "
                                                          "cache/theseus/<task>/theseus_constant when it exists)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name in options.tasks:
            run_task(name, Path(folder), options.repeats, options.successor if name == options.tasks[0] else None)
