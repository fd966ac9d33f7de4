"""Model cards that state what was compressed and what it cost, and pushing to the Hub.

Every number in a card comes from a results payload measured by :mod:`hfcompress.benchmark`
(rows with ``score``, ``params``, ``size_bytes``, ``latency_bs*_ms``, and ``hardware``), or from
the Trainer's own evaluation; what was not measured is left out, never estimated. Tokens come
from the usual ``huggingface_hub`` login or ``HF_TOKEN`` and are only handed to ``HfApi``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .atomic import writing_folder
from .data.tasks import TASKS
from .integration import HfCompressConfig
from .registry import find_method
from .runtimes import runtime_for_folder

# Config fields too long for a card line (scores, explicit lists): the record in config.json keeps them.
_LONG_FIELDS = {"groups", "targets_per_layer"}


def _steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's steps in the current shape (records of earlier releases are upgraded on read)."""
    record = config.get("quantization_config") or {}
    if record.get("quant_method") != "hfcompress":
        return []
    return HfCompressConfig(**record).steps


def _tag(step: dict[str, Any]) -> str:
    spec = find_method(step["method"])
    return (spec.tag if spec is not None and spec.tag else step["method"])


def _describe_step(step: dict[str, Any]) -> str:
    spec = find_method(step["method"])
    title = spec.title if spec is not None else step["method"]
    settings = {k: v for k, v in step.get("config", {}).items() if k not in _LONG_FIELDS and v is not None}
    if spec is not None and spec.describe is not None:
        settings.update(spec.describe(step))
    text = ", ".join(f"`{k}`={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items())
    return f"- **{title}**" + (f": {text}" if text else "")


def _hub_id(name: str | None) -> str | None:
    """``name`` if it can be a Hub model id; a local folder never becomes a link or card metadata."""
    if not name or Path(name).exists() or os.path.isabs(name) or name.startswith((".", "~")):
        return None
    return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else None


def _describe_stage(number: int, stage: dict[str, Any]) -> str:
    parts = []
    for method in stage.get("methods", []):
        settings = {k: v for k, v in method.items() if k != "method" and v is not None}
        parts.append(f"`{method['method']}` " + json.dumps(settings))
    for key in ("strategy", "format", "iterative", "distillation", "training"):
        if stage.get(key) is not None:
            parts.append(f"{key}: {json.dumps(stage[key])}")
    return f"{number}. **{stage['stage']}** ({stage['name']})" + (": " + "; ".join(parts) if parts else "")


def _row(rows: list[dict[str, Any]], name: str | None, default_index: int) -> dict[str, Any] | None:
    if not rows:
        return None
    if name is None:
        return rows[default_index]
    for row in rows:
        if row["name"] == name:
            return row
    raise ValueError(f"No results row named {name!r}; rows: {[r['name'] for r in rows]}.")


def build_model_card(
    model_dir: str | os.PathLike,
    *,
    results: dict[str, Any] | None = None,
    compressed_row: str | None = None,
    baseline_row: str | None = None,
    base_model: str | None = None,
    model_name: str | None = None,
    stages: list[dict[str, Any]] | None = None,
) -> ModelCard:
    """A card for a saved compressed model: metadata, each step with its settings, measured cost.

    ``results`` is a payload written by the benchmark harness / scripts (``results.json``); the
    compressed model's row defaults to the last, the baseline's to the first.

    Example:
        >>> card = build_model_card("out/successor", results=json.load(open("out/results.json")),
        ...                         base_model="bert-base-uncased")
        >>> card.save("out/successor/README.md")
    """
    model_dir = Path(model_dir)
    base_model = _hub_id(base_model)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{str(model_dir)!r} has no config.json; pass a folder written by save_pretrained.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    steps = _steps(config)
    rows = (results or {}).get("rows", [])
    compressed = _row(rows, compressed_row, -1)
    baseline = _row(rows, baseline_row, 0)
    task = (results or {}).get("task")
    spec = TASKS.get(task) if task else None
    name = model_name or model_dir.name

    tags = ["hfcompress", "text-classification"]
    tags += [_tag(step) for step in steps]
    if (results or {}).get("distillation", {}).get("distill"):
        tags.append("distillation")
    eval_results = None
    if compressed is not None and compressed.get("metrics") and spec is not None:
        dataset_name = f"{spec.benchmark.upper()} {spec.name.upper()}"
        eval_results = [
            EvalResult(task_type="text-classification", dataset_type=f"{spec.hub_path}", dataset_name=dataset_name,
                       dataset_config=spec.hub_name, dataset_split="validation", metric_type=metric,
                       metric_value=round(float(value), 4))
            for metric, value in compressed["metrics"].items()
        ]
    data = ModelCardData(
        base_model=base_model,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=list(dict.fromkeys(tags)),
        datasets=[spec.hub_path] if spec else None,
        model_name=name,
        eval_results=eval_results,
    )
    needs_import = any(not getattr(find_method(step["method"]), "loads_without_hfcompress", False) for step in steps)
    lines = [f"# {name}", ""]
    base_text = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "its uncompressed base model"
    lines += [f"Compressed from {base_text} with [hfcompress](https://pypi.org/project/hfcompress/).", ""]
    lines += ["## What was done", ""]
    lines += [_describe_step(step) for step in steps] or ["- no compression steps are recorded in config.json"]
    lines += ["", "The full record (shapes per layer, settings) is `quantization_config` in `config.json`.", ""]
    if stages:
        lines += ["## How it was made", "", "An `hfcompress compress` pipeline (`recipe.yaml` beside the weights "
                  "reproduces it), stage by stage:", ""]
        lines += [_describe_stage(number, stage) for number, stage in enumerate(stages, start=1)] + [""]
    lines += ["## What it cost", ""]
    if compressed is None or baseline is None:
        lines += ["No measurements were supplied when this card was written, so none are shown (`hfcompress "
                  "benchmark ORIGINAL THIS --task T --output r.json`, then `hfcompress push THIS --results r.json`, "
                  "adds them).", ""]
    else:
        lines += _cost_table(compressed, baseline, spec, results or {})
    chosen_by = (results or {}).get("search") or {}
    if chosen_by.get("reference"):
        reference = chosen_by["reference"]
        judged = ("agreement with the original's predictions" if reference["judged_on"] == "agreement"
                  else "their labels")
        lines += [f"Chosen by `hfcompress search` (trial {chosen_by.get('trial')}), its budget judged on "
                  f"{reference['held_out_rows']} held-out rows by {judged}: {reference['why']}.", ""]
    runtime = runtime_for_folder(model_dir)
    if runtime is not None:
        lines += ["## Runtime", "", _runtime_line(runtime, runtime.record(model_dir)), ""]
    lines += ["## How to load", "", "```python"]
    if runtime is not None:
        runner = runtime.runner.__name__
        lines += [f"from hfcompress import {runner}  # {runtime.name}; pip install hfcompress",
                  "from transformers import AutoTokenizer", "",
                  f'model = {runner}.from_pretrained("{name}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", ""]
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    if needs_import:
        lines += ["import hfcompress  # registers the layout rebuild; pip install hfcompress"]
    lines += ["from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
              f'model = AutoModelForSequenceClassification.from_pretrained("{name}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", ""]
    if not needs_import:
        lines += ["This is a standard architecture: `import hfcompress` is not needed to load it.", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _runtime_line(runtime: Any, record: dict[str, Any]) -> str:
    """Which runtime, in what precision, exported on which CPU: int8 speed depends on the host's instructions."""
    int8 = record.get("int8")
    precision = "int8" + ("" if int8 in (True, "dynamic") else f" ({int8})") if int8 else "float"
    float_parts = record.get("precision") or record.get("inference_precision_here")
    if float_parts:
        precision += f"; float parts in {float_parts}" + ("" if record.get("precision") else
                                                          " (the exporting CPU's choice)")
    host = record.get("host") or {}
    isa = f"; exported on a CPU with {host.get('int8_isa')} int8 instructions{' and bf16' if host.get('bf16') else ''}" \
        if host else ""
    return f"Runs on **{runtime.name}**: {precision}{isa}. Speedups depend on the CPU's int8 instructions."


def _cost_table(compressed: dict, baseline: dict, spec: Any, results: dict) -> list[str]:
    metric = spec.main_metric if spec else "score"

    def cell(row: dict, key: str, pattern: str, scale: float = 1.0) -> str:
        value = row.get(key)
        return "" if value is None else pattern.format(value * scale)

    lines = [f"| | {baseline['name']} | {compressed['name']} | ratio |", "|---|---|---|---|"]
    for label, key, pattern, scale in [
        (f"dev {metric}", "score", "{:.2f}", 100.0),
        ("parameters", "params", "{:,.0f}", 1.0),
        ("weights on disk (MB)", "size_bytes", "{:.1f}", 1 / 2**20),
        ("latency, batch 1 (ms)", "latency_bs1_ms", "{:.1f}", 1.0),
        ("latency, batch 32 (ms)", "latency_bs32_ms", "{:.0f}", 1.0),
    ]:
        if compressed.get(key) is None and baseline.get(key) is None:
            continue
        ratio = ""
        if compressed.get(key) and baseline.get(key):
            value = compressed[key] / baseline[key]
            ratio = f"{1 / value:.2f}x faster" if key.startswith("latency") else f"{value:.2f}"
        lines.append(f"| {label} | {cell(baseline, key, pattern, scale)} | {cell(compressed, key, pattern, scale)} | {ratio} |")
    hardware = results.get("hardware") or {}
    where = ", ".join(f"{k}: {v}" for k, v in hardware.items() if v is not None)
    dev_rows = results.get("dev_rows") or (results.get("data") or {}).get("dev_rows")
    lines += ["", "Measured by `hfcompress.benchmark` in one run"
              + (f" on {dev_rows} dev examples" if dev_rows else "")
              + "; latency is the median of timed forward passes at sequence length 128"
              + (f" ({where})." if where else "."), ""]
    return lines


def prepare_upload_folder(
    model_dir: str | os.PathLike, card: ModelCard, output_dir: str | os.PathLike, tokenizer: Any = None
) -> Path:
    """The exact folder that gets uploaded: the saved model's files, the tokenizer, and README.md."""
    model_dir, final_dir = Path(model_dir), Path(output_dir)
    with writing_folder(final_dir) as output_dir:
        for item in model_dir.iterdir():
            if item.is_file() and item.name != "README.md":
                shutil.copy2(item, output_dir / item.name)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        card.save(output_dir / "README.md")
    return final_dir


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    card: ModelCard | None = None,
    tokenizer: Any = None,
    private: bool | None = None,
    token: str | None = None,
    api: Any = None,
    commit_message: str = "Upload model compressed with hfcompress",
) -> str:
    """Upload ``model_dir`` (a ``save_pretrained`` folder) plus tokenizer and card; returns the commit URL.

    ``token`` defaults to the ``huggingface_hub`` login / ``HF_TOKEN``; it is passed to ``HfApi`` only.
    ``api`` replaces ``HfApi()`` (tests pass a recorder).

    Example:
        >>> push_to_hub("out/successor", "me/minilm-theseus-sst2", card=build_model_card("out/successor", results=r))
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    card = card or build_model_card(model_dir)
    with tempfile.TemporaryDirectory() as staging:
        folder = prepare_upload_folder(model_dir, card, staging, tokenizer)
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        repo_name = getattr(repo, "repo_id", repo_id)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_name, repo_type="model",
                                   commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))


def install_model_push_card() -> None:
    """Make ``PreTrainedModel.push_to_hub`` upload hfcompress's card for a model that carries a record.

    transformers writes a generic card there ("a 🤗 transformers model that has been pushed on the
    Hub"), which says nothing of what was compressed. For a model with an hfcompress record the card
    that transformers would create is replaced by :func:`build_model_card` of the model (steps and
    settings; measured cost needs a results payload: use ``hfcompress push --results``). Every other
    model, and every argument of ``push_to_hub``, goes through unchanged. Called on ``import hfcompress``.
    """
    import functools

    import transformers.utils.hub as transformers_hub
    from transformers import PreTrainedModel

    original = PreTrainedModel.push_to_hub
    if getattr(original, "_hfcompress_card", False):
        return
    if not hasattr(transformers_hub, "create_and_tag_model_card"):  # another transformers layout: leave it alone
        return

    @functools.wraps(original)
    def push_to_hub(self: Any, repo_id: str, *args: Any, **kwargs: Any) -> Any:
        from .integration import get_record

        if get_record(self) is None:
            return original(self, repo_id, *args, **kwargs)
        with tempfile.TemporaryDirectory() as folder:
            self.config.save_pretrained(folder)
            card = build_model_card(folder, base_model=getattr(self.config, "_name_or_path", None),
                                    model_name=repo_id)
        generic = transformers_hub.create_and_tag_model_card

        def ours(repo: str, tags: list[str] | None = None, *more: Any, **options: Any) -> ModelCard:
            card.data.tags = list(dict.fromkeys([*(card.data.tags or []), *(tags or [])]))
            return card

        transformers_hub.create_and_tag_model_card = ours
        try:
            return original(self, repo_id, *args, **kwargs)
        finally:
            transformers_hub.create_and_tag_model_card = generic

    push_to_hub._hfcompress_card = True
    PreTrainedModel.push_to_hub = push_to_hub
