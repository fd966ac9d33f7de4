"""Staged recipes: layer reduction, training-time methods with distillation, post-training steps, export.

A recipe is YAML (or a dict) with the task, the data it trains on, defaults for every training
stage and an ordered list of ``stages``::

    task: sst2
    max_seq_length: 64
    max_train_samples: 8000      # optional subset of train (shuffled with seed)
    holdout: 0.0                 # fraction of train kept out of training (the search scores on it)
    holdout_file: null           # or: a labelled file in the task's layout the model never saw (replaces the above)
    holdout_split: null          # or: a split of the task's data (e.g. validation_mismatched) used as held-out rows
    seed: 42
    device: auto                 # auto | cpu | cuda: training and float steps; int8 steps and exports run on the CPU
    training: {per_device_train_batch_size: 32, learning_rate: 5.0e-5}    # TrainingArguments fields
    stages:
      - stage: layers            # layer reduction, then fine-tune
        strategy: truncate       # truncate | theseus
        layers: 3
        keep: evenly             # truncate: first | evenly
        training: {max_steps: 400}
        distillation: {alpha: 0.5, temperature: 2.0, hidden_weight: 1.0, teacher: original}   # the default
                                 # for truncation; `false` fine-tunes without a teacher
      - stage: train             # methods (post-training ones compress first) inside a fine-tune
        methods: [{method: heads, target: 0.5}, {method: ffn, target: 0.5}]
        iterative: {prune_every: 50}    # heads/ffn only: prune in config.iterations rounds while training
                                        # (reconstruct: true refits the output projections after each round)
        training: {max_steps: 400}
        distillation: {teacher: original}
      - stage: compress          # one post-training step
        method: int8_dynamic
        embeddings: true
      - stage: export            # last, if present: onnx | onnx_int8 (any OnnxExportConfig field beside it)
        format: onnx_int8
        weight_bits: 8

Each finished stage is saved to ``OUTPUT/stages/NN-name/`` (written to a temporary folder, then
renamed, so a folder that exists is complete). Running the same recipe again continues after
the last finished stage, and a training stage resumes from its last Trainer checkpoint in
``OUTPUT/work/NN-name/``. The final model is copied to ``OUTPUT/`` with the tokenizer, the recipe,
``results.json`` (teacher and final model measured in one run) and a model card listing every stage.

Example:
    >>> result = run_pipeline("configs/pipeline_sst2.yaml", model="my-sst2-model", output="out/")
    >>> AutoModelForSequenceClassification.from_pretrained("out/")  # or OnnxSequenceClassifier for an export
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel,
                          TrainingArguments)

from .adapters import check_sequence_length
from .atomic import last_complete_checkpoint, replace_files, writing_folder
from .devices import describe, holds_int8, model_device, resolve_device, training_arguments
from .method_config import did_you_mean
from .registry import config_from_dict, get_method, layer_strategies, leaves_int8, method_for_config, method_names
from .runtimes import export_config, runtime_for_folder

logger = logging.getLogger(__name__)

STAGE_KINDS = ("layers", "train", "compress", "export")
TRAINING_STAGES = ("layers", "train")
RECIPE_KEYS = {"task", "data_dir", "dev_split", "max_seq_length", "max_train_samples", "holdout", "holdout_file",
               "holdout_split", "seed", "training", "device",
               "stages", "model", "output", "measure", "calibration_batches",
               # the post-training-only format of earlier releases: `steps` + `importance_batches`
               "steps", "importance_batches"}
DISTILLATION_KEYS = {"teacher", "alpha", "temperature", "hidden_weight"}
# A progress bar with time left (Trainer's own; shown even where library logging is quiet), and one summary line
# per stage instead of a loss dict every few steps.
DEFAULT_TRAINING = {"per_device_train_batch_size": 32, "learning_rate": 5e-5, "max_steps": 200,
                    "save_strategy": "steps", "save_steps": 100, "save_total_limit": 1, "logging_strategy": "no",
                    "disable_tqdm": False, "report_to": "none", "eval_strategy": "no"}


class RecipeError(ValueError):
    """A recipe that cannot run; raised before any work, with one line saying what and how to fix it."""


class BudgetExceededError(ValueError):
    """The finished pipeline lost more than ``max_drop`` on dev; its stages stay for a changed recipe to reuse."""


KEEP_WARNING = 0.95  # a final model keeping less of the original's dev score than this gets a warning line


@dataclass
class Stage:
    """One validated stage: its position, folder name, kind and settings."""

    index: int
    name: str
    kind: str
    settings: dict[str, Any]
    configs: list[Any] = field(default_factory=list)
    export: Any = None  # an export stage's runtime config (OnnxExportConfig, ...)

    @property
    def folder(self) -> str:
        return f"{self.index:02d}-{self.name}"


@dataclass
class PipelineResult:
    """Where the final model is, its stages, and the measured rows (teacher first) when measured."""

    output: Path
    stages: list[dict[str, Any]]
    results: dict[str, Any] | None
    is_onnx: bool
    runtime: str | None = None  # the export's runtime (onnxruntime, ...), None for a PyTorch model


# --- recipes ---------------------------------------------------------------------------------------------------
def load_recipe(recipe: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """A recipe dict from a YAML path or a dict (copied); earlier releases' ``steps`` become compress stages."""
    if isinstance(recipe, dict):
        data = copy.deepcopy(recipe)
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError(f"--config {path}: no such file")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a mapping with `stages` (see hfcompress.pipeline)")
    if "steps" in data:
        if "stages" in data:
            raise RecipeError("the recipe has both `steps` and `stages`: write every step as a stage")
        data["stages"] = [{"stage": "compress", **dict(step)} for step in data.pop("steps") or []]
        if "importance_batches" in data:
            data["calibration_batches"] = data.pop("importance_batches")
    return data


def validate_recipe(recipe: dict[str, Any]) -> list[Stage]:
    """Check the whole recipe before any work; returns its stages. Raises :class:`RecipeError` (one line).

    Example:
        >>> validate_recipe({"stages": [{"stage": "compress", "method": "int8_dynamic"}, {"stage": "train",
        ...                  "methods": [{"method": "heads"}]}]})
        Traceback (most recent call last):
        RecipeError: stage 1 (compress int8_dynamic) comes before training stage 2: ...
    """
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise RecipeError(f"unknown recipe key(s) {unknown}{did_you_mean(unknown, RECIPE_KEYS)}; recipe keys: "
                          f"{sorted(RECIPE_KEYS - {'steps'})}")
    _check_training_fields("recipe `training`", recipe.get("training") or {})
    holdout = recipe.get("holdout", 0.0) or 0.0
    if not 0 <= holdout < 1:
        raise RecipeError(f"holdout is the fraction of train kept out of training and must lie in [0, 1); got {holdout}")
    given = [key for key in ("holdout_file", "holdout_split") if recipe.get(key)]
    if len(given) > 1:
        raise RecipeError("give held-out rows one way: holdout_file or holdout_split, not both")
    raw = recipe.get("stages")
    if not isinstance(raw, list) or not raw:
        raise RecipeError("the recipe has no `stages` (a list of {stage: layers|train|compress|export, ...})")
    stages = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or "stage" not in item:
            raise RecipeError(f"stage {index}: each stage is a mapping with `stage: {'|'.join(STAGE_KINDS)}`; "
                              f"got {item!r}")
        stages.append(_validate_stage(index, dict(item)))
    for stage in stages:
        if stage.kind == "export" and stage.index != len(stages):
            raise RecipeError(f"stage {stage.index} (export) must be the last stage: an ONNX model does not take "
                              "further steps")
        if _is_int8(stage):
            later = [s.index for s in stages if s.index > stage.index and s.kind in TRAINING_STAGES]
            if later:
                raise RecipeError(f"stage {stage.index} ({stage.name}) comes before training stage {later[0]}: int8 "
                                  "models do not train; put int8 after every training stage")
        _check_layer_count_change(stage, stages)
    return stages


def _check_layer_count_change(stage: Stage, stages: list[Stage]) -> None:
    """A step that changes the layer count cannot follow one whose record describes every layer (the record would
    no longer match the layers): refused here, before an hour of training, rather than when the stage runs."""
    changing = [c for c in stage.configs if method_for_config(c) is not None and method_for_config(c).changes_layer_count]
    if not changing:
        return
    for earlier in stages[:stage.index - 1]:
        per_layer = [c.name for c in earlier.configs if get_method(c.name).rebuild is not None]
        if per_layer:
            raise RecipeError(f"stage {stage.index} ({stage.name}) changes the layer count after stage {earlier.index} "
                              f"({', '.join(per_layer)}), whose record describes every layer: change the layer count "
                              "first, then compress the layers that stay")


def _validate_stage(index: int, item: dict[str, Any]) -> Stage:
    kind = item.pop("stage")
    if kind not in STAGE_KINDS:
        raise RecipeError(f"stage {index}: unknown stage {kind!r}{did_you_mean(str(kind), STAGE_KINDS)}; stages: "
                          f"{', '.join(STAGE_KINDS)}")
    name = str(item.pop("name", "") or "")
    if kind in TRAINING_STAGES:
        _check_training_fields(f"stage {index} ({kind}) `training`", item.get("training") or {})
        distillation = item.get("distillation")
        if distillation is not None and distillation is not False:  # false: no distillation
            if not isinstance(distillation, dict) or set(distillation) - DISTILLATION_KEYS:
                raise RecipeError(f"stage {index}: distillation takes {sorted(DISTILLATION_KEYS)}; got {distillation!r}")
            if distillation.get("teacher", "original") not in ("original", "input"):
                raise RecipeError(f"stage {index}: distillation teacher is `original` (the model given to the "
                                  f"pipeline) or `input` (this stage's input); got {distillation['teacher']!r}")
    else:
        stray = sorted(k for k in item if k in ("training", "distillation") or k in _TRAINING_FIELDS)
        if stray:
            raise RecipeError(f"stage {index} ({kind}): {stray} are training settings; a {kind} stage does not "
                              "train (add a `train` stage after it to fine-tune)")
    configs: list[Any] = []
    export = None
    try:
        if kind == "layers":
            strategies = layer_strategies()
            strategy = item.get("strategy", "truncate")
            if strategy not in strategies:
                raise RecipeError(f"stage {index} (layers): strategy must be one of {tuple(strategies)}; got "
                                  f"{strategy!r}{did_you_mean(str(strategy), strategies)}")
            layer_stage = strategies[strategy].layer_stage
            _only(index, kind, item, {"strategy", "layers", "training", "distillation", *layer_stage.keys})
            configs = [layer_stage.build(item.get("layers", 3), item)]
            name = name or f"{strategy}{item.get('layers', 3)}"
        elif kind == "train":
            _only(index, kind, item, {"methods", "iterative", "training", "distillation"})
            methods = item.get("methods") or []
            if not isinstance(methods, list):
                raise RecipeError(f"stage {index} (train): `methods` is a list of {{method: NAME, ...fields}}")
            configs = [_method_config(index, m) for m in methods]
            int8 = [c.name for c in configs if get_method(c.name).runtime_quantized]
            if int8:
                raise RecipeError(f"stage {index} (train): int8 models do not train; put {int8[0]} in a compress "
                                  "stage after training")
            needs_tokenizer = [c.name for c in configs if get_method(c.name).needs_tokenizer]
            if needs_tokenizer:
                raise RecipeError(f"stage {index} (train): {needs_tokenizer[0]} changes the tokenizer; put it in a "
                                  "compress stage of its own (before the training stages)")
            if item.get("iterative") is not None:
                units = sorted(s.name for s in map(get_method, method_names()) if s.prunes_units)
                if not configs or any(not get_method(c.name).prunes_units for c in configs):
                    raise RecipeError(f"stage {index} (train): `iterative` prunes units in rounds while training; "
                                      f"its methods must be among {units}")
                if set(item["iterative"]) - {"prune_every", "reconstruct"}:
                    raise RecipeError(f"stage {index} (train): iterative takes prune_every (steps between rounds) "
                                      "and reconstruct (true: refit the output projections after each round)")
            if not name:
                name = "train-" + "-".join(c.name for c in configs) if configs else "finetune"
        elif kind == "compress":
            methods = item.pop("methods", None)
            configs = ([_method_config(index, m) for m in methods] if methods is not None
                       else [_method_config(index, item)])
            for config in configs:
                if not get_method(config.name).is_post_training:
                    raise RecipeError(f"stage {index} (compress): {config.name!r} trains; put it in a `train` stage")
            name = name or "-".join(c.name for c in configs)
        else:
            fmt = item.get("format", "onnx_int8")
            # Every option of the runtime's export config is a stage key (the same object the function and the
            # CLI read).
            _, export = export_config(fmt, {k: v for k, v in item.items() if k != "format"})
            name = name or fmt
    except RecipeError:
        raise
    except (ValueError, TypeError) as error:
        raise RecipeError(f"stage {index} ({kind}): {error}".splitlines()[0]) from error
    return Stage(index, name.replace("/", "-"), kind, item, configs, export if kind == "export" else None)


def _only(index: int, kind: str, item: dict, allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise RecipeError(f"stage {index} ({kind}): unknown key(s) {unknown}{did_you_mean(unknown, allowed)}; a {kind} "
                          f"stage takes {sorted(allowed)}")


def _method_config(index: int, settings: Any) -> Any:
    if not isinstance(settings, dict) or "method" not in settings:
        raise RecipeError(f"stage {index}: a method is {{method: NAME, ...its config fields}}; got {settings!r}")
    settings = dict(settings)
    method = settings.pop("method")
    if method not in method_names():
        raise RecipeError(f"stage {index}: unknown method {method!r}{did_you_mean(str(method), method_names())}; "
                          f"methods: {', '.join(method_names())}")
    return config_from_dict(method, settings)


_TRAINING_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def _check_training_fields(where: str, settings: dict[str, Any]) -> None:
    if not isinstance(settings, dict):
        raise RecipeError(f"{where} is a mapping of TrainingArguments fields; got {settings!r}")
    unknown = sorted(set(settings) - _TRAINING_FIELDS)
    if unknown:
        raise RecipeError(f"{where}: {unknown} are not TrainingArguments fields{did_you_mean(unknown, _TRAINING_FIELDS)}")
    if "output_dir" in settings:
        raise RecipeError(f"{where}: output_dir is set by the pipeline (OUTPUT/work/NN-name)")


def _is_int8(stage: Stage) -> bool:
    """Whether the stage leaves an int8 model (which no later stage can train; an export is last anyway)."""
    return any(leaves_int8(c) for c in stage.configs)


# --- running ---------------------------------------------------------------------------------------------------
def run_pipeline(
    recipe: str | os.PathLike | dict[str, Any],
    *,
    model: str | None = None,
    output: str | os.PathLike | None = None,
    task: str | None = None,
    data_dir: str | None = None,
    measure: bool = True,
    max_drop: float | None = None,
    device: str | None = None,
) -> PipelineResult:
    """Run (or continue) a recipe; see the module docstring for its format.

    ``device`` (overrides the recipe's ``device``; default ``auto``: CUDA when torch sees it, else the CPU): where
    training stages and the other float steps run (bf16 training on a GPU that has it). The int8 steps and the
    exports run on the CPU, the model moving there with a note; the measurement times the final model where it
    runs and the original on the same device (each row names it). See :mod:`hfcompress.devices`.

    ``model``/``output``/``task``/``data_dir`` override the recipe's keys. With ``measure`` (and a
    task), the original and final models are scored on the dev set and timed in one run
    (``results.json``; the card shows it), with a warning line when the final model keeps less than
    ``KEEP_WARNING`` of the original's score. ``max_drop`` (points of the task's main metric on dev): more lost
    raises :class:`BudgetExceededError` after the measurement; the stages stay, so a changed recipe reuses them.

    Example:
        >>> run_pipeline("configs/pipeline_sst2.yaml", model="my-sst2-model", output="out")
    """
    recipe = load_recipe(recipe)
    stages = validate_recipe(recipe)
    model_path = model or recipe.get("model")
    output = Path(output or recipe.get("output") or "")
    task = task or recipe.get("task")
    data_dir = data_dir if data_dir is not None else recipe.get("data_dir")
    if not model_path or not str(output):
        raise RecipeError("give the model and the output folder (--model/--output, or `model`/`output` in the recipe)")
    try:
        device_used = resolve_device(device or recipe.get("device", "auto"))
    except ValueError as error:
        raise RecipeError(str(error)) from None
    if max_drop is not None and not (measure and task):
        raise RecipeError("max_drop is checked on the dev set: it needs measure=True and a task")
    needs_data = any(s.kind in TRAINING_STAGES or any(c.requires_dataloader for c in s.configs) for s in stages)
    if needs_data and not task:
        raise RecipeError("this recipe trains or calibrates: give the task (--task or `task:` in the recipe)")
    try:
        check_sequence_length(AutoConfig.from_pretrained(model_path), int(recipe.get("max_seq_length", 128)))
    except ValueError as error:
        raise RecipeError(str(error)) from error
    output.mkdir(parents=True, exist_ok=True)
    processes = _Processes()
    # Under torchrun the processes of one run share the folder; the main one holds the lock for them all.
    with output_lock(output) if processes.is_main else contextlib.nullcontext():
        if processes.is_main:
            recipe_text = yaml.safe_dump({**recipe, "task": task}, sort_keys=False)
            (output / "recipe.yaml").write_text(recipe_text, encoding="utf-8")

        original_tokenizer = AutoTokenizer.from_pretrained(model_path)
        task_data = RecipeData(recipe, task, data_dir) if task else None
        original = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
        _run_stages(stages, original, original_tokenizer, task_data, recipe, task, output, processes, device_used)
        records = [_stage_record(stage) for stage in stages]
        final = output / "stages" / stages[-1].folder
        runtime = runtime_for_folder(final)
        results = None
        if processes.is_main:
            replace_files(final, output, skip=("README.md", "stage.json"))
            if measure and task:
                results = _measure(original, original_tokenizer, task_data, recipe, task, output, records, device_used)
            from .hub import build_model_card

            build_model_card(output, results=results, base_model=model_path, stages=records).save(output / "README.md")
            shutil.rmtree(output / "work", ignore_errors=True)
        processes.wait()
    if results is not None:
        warn_if_lost(results)
        original, final = results["rows"][0], results["rows"][-1]
        drop = 100 * (original["score"] - final["score"])
        if max_drop is not None and drop > max_drop:
            raise BudgetExceededError(
                f"the compressed model lost {drop:.2f} points of dev {results['metric']} ({100 * final['score']:.2f} "
                f"vs {100 * original['score']:.2f}), more than max_drop {max_drop:g}; its stages stay in "
                f"{output / 'stages'} (a changed recipe reuses the finished ones)")
    is_onnx = runtime is not None and runtime.name == "onnxruntime"
    return PipelineResult(output, records, results, is_onnx, runtime.name if runtime else None)


class _Processes:
    """This run's place among the processes torchrun / accelerate started (one process: the only, main one).
    Training stages run in every process (the Trainer makes them data-parallel); the main process alone writes
    stage folders, exports, measures and writes the card, while the others wait for it and read what it wrote."""

    def __init__(self) -> None:
        self.count = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.count > 1:
            import torch.distributed as dist

            # The group torchrun / accelerate describe in the environment; the Trainer then uses the same one.
            if not dist.is_initialized():
                if torch.cuda.is_available():  # each process its own GPU, as the Trainer will pick it
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.count > 1:
            import torch.distributed as dist

            dist.barrier()


def _run_stages(stages: list[Stage], original: PreTrainedModel, original_tokenizer: Any, task_data: Any,
                recipe: dict[str, Any], task: str | None, output: Path, processes: _Processes | None = None,
                device: torch.device | None = None) -> None:
    """Run the stages not finished yet, each saved whole to OUTPUT/stages/NN-name before the next starts."""
    processes = processes or _Processes()
    device = device or torch.device("cpu")
    current: Any = None
    tokenizer = original_tokenizer
    for stage in stages:
        folder = output / "stages" / stage.folder
        if folder.is_dir():
            logger.info("stage %s: already finished (%s)", stage.folder, folder)
            current = None  # loaded lazily: only the last finished stage's model is needed
            continue
        trains = stage.kind in TRAINING_STAGES
        if trains or processes.is_main:
            if current is None:
                previous = _last_finished(output, stages, stage.index)
                current = (copy.deepcopy(original) if previous is None
                           else AutoModelForSequenceClassification.from_pretrained(previous))
                # A stage may have changed the tokenizer (vocabulary pruning): each stage folder keeps its own.
                tokenizer = original_tokenizer if previous is None else AutoTokenizer.from_pretrained(previous)
            logger.info("stage %d/%d: %s", stage.index, len(stages), stage.name)
            data = task_data.tokenized(tokenizer) if task_data else None
            current = _place(stage, current, device)
            current, tokenizer = _run_stage(stage, current, original, tokenizer, data, task_data, recipe, task, output,
                                            device)
            if processes.is_main:
                _save_stage(stage, current, tokenizer, folder, describe(model_device(current)))
                shutil.rmtree(output / "work" / stage.folder, ignore_errors=True)  # checkpoints, optimizer state
        if not processes.is_main and not trains:
            current = None  # the main process ran this step: the next stage reads its folder
        processes.wait()


def _cpu_only(stage: Stage) -> str | None:
    """Why a stage runs on the CPU only (int8 steps and exports), or None."""
    if stage.kind == "export":
        return f"the {stage.settings.get('format', 'onnx_int8')} export targets a CPU runtime"
    if stage.kind == "compress" and any(leaves_int8(config) for config in stage.configs):
        return "int8 kernels run on the CPU only"
    return None


def _place(stage: Stage, model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    """Put the model where this stage runs: the CPU for int8 steps and exports (said once), else ``device`` (a
    training stage's Trainer moves it itself); a model holding int8 modules stays on the CPU."""
    reason = _cpu_only(stage)
    if reason is not None or holds_int8(model):
        if model_device(model).type != "cpu":
            logger.info("stage %s: %s; the model moves to the CPU for it and the stages after it",
                        stage.folder, reason or "the model holds int8 modules, whose kernels are the CPU's")
            model = model.to("cpu")
        return model
    if stage.kind not in TRAINING_STAGES and model_device(model) != device:
        model = model.to(device)
    return model


def _measure(original: PreTrainedModel, original_tokenizer: Any, task_data: RecipeData, recipe: dict[str, Any],
             task: str, output: Path, records: list[dict[str, Any]], device: torch.device | None = None) -> dict[str, Any]:
    """The original and the final model on dev, timed in one run; written to results.json / results.md."""
    from .benchmark import write_results

    settings = recipe.get("measure") or {}
    final_tokenizer = AutoTokenizer.from_pretrained(output) if (output / "tokenizer_config.json").is_file() \
        else original_tokenizer
    results = measure_against_original(original, output, task_data.tokenized(original_tokenizer)["validation"],
                                       task, "compressed", rounds={1: int(settings.get("rounds_bs1", 30)),
                                                                   32: int(settings.get("rounds_bs32", 10))},
                                       final_dataset=task_data.tokenized(final_tokenizer)["validation"],
                                       device=device)
    results.update({"train_rows": task_data.train_rows, "stages": records})
    write_results(results, output / "results.json", output / "results.md")
    return results


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold ``OUTPUT/.hfcompress.lock`` while a pipeline writes there: a second pipeline started on the same folder
    refuses at once instead of writing into the first one's stages (the lock dies with its process)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(output / ".hfcompress.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RecipeError(f"another hfcompress run is writing to {output} (it holds {lock.lock_file}); wait for it "
                          "to finish, or give another output folder") from None
    try:
        yield
    finally:
        lock.release()


def warn_if_lost(results: dict[str, Any], keep: float = KEEP_WARNING) -> str | None:
    """Log (and return) a warning line when the last row keeps less than ``keep`` of the first row's score.

    Example:
        >>> warn_if_lost({"metric": "accuracy", "rows": [{"score": 0.9}, {"score": 0.5}]})
        "the compressed model keeps 56% of the original's dev accuracy (50.00 vs 90.00): ..."
    """
    original, final = results["rows"][0], results["rows"][-1]
    if not original.get("score") or final.get("score") is None or final["score"] >= keep * original["score"]:
        return None
    message = (f"the compressed model keeps {final['score'] / original['score']:.0%} of the original's dev "
               f"{results.get('metric', 'score')} ({100 * final['score']:.2f} vs {100 * original['score']:.2f}): "
               f"more than {1 - keep:.0%} lost; try a milder recipe, or give a budget (--max-drop)")
    logger.warning(message)
    return message


def _last_finished(output: Path, stages: list[Stage], before: int) -> Path | None:
    done = [output / "stages" / s.folder for s in stages if s.index < before]
    return done[-1] if done else None


class RecipeData:
    """A recipe's rows (train subset, holdout, dev) as text, tokenized once per tokenizer the stages use."""

    def __init__(self, recipe: dict[str, Any], task: str, data_dir: str | None) -> None:
        from .data import load_task

        seed = int(recipe.get("seed", 42))
        dataset = load_task(task, data_dir, dev_split=recipe.get("dev_split"), seed=seed)
        train = dataset["train"].shuffle(seed=seed)
        limit = recipe.get("max_train_samples")
        if limit and train.num_rows > limit:
            train = train.select(range(limit))
        holdout = float(recipe.get("holdout", 0.0) or 0.0)
        self.splits = {"validation": dataset["validation"]}
        if recipe.get("holdout_file"):  # rows no model saw: the honest reference for a model trained on all of train
            from .data import load_task_file

            self.splits["holdout"] = load_task_file(task, recipe["holdout_file"])
        elif recipe.get("holdout_split"):
            name = recipe["holdout_split"]
            if name not in dataset or name == "train":
                raise RecipeError(f"holdout_split {name!r} is not a held-out split of {task}; its splits: "
                                  f"{[n for n in dataset if n != 'train']}")
            self.splits["holdout"] = dataset[name]
        elif holdout:
            # The last rows are held out, so the first ones are the same training rows with or without a holdout:
            # max_train_samples = N / (1 - holdout) trains on exactly the N rows a recipe without it would.
            count = max(1, int(round(holdout * train.num_rows)))
            keep = train.num_rows - count
            self.splits["holdout"], train = train.select(range(keep, train.num_rows)), train.select(range(keep))
        if train.num_rows == 0:
            raise RecipeError(f"the {task} training split has no rows left to train on (data_dir={data_dir!r}, "
                              f"max_train_samples={limit!r}, holdout={holdout!r}); give it rows, or lower the holdout")
        self.splits["train"] = train
        self.task, self.length = task, int(recipe.get("max_seq_length", 128))
        self._tokenized: dict[int, tuple[Any, dict[str, Any]]] = {}

    @property
    def train_rows(self) -> int:
        return self.splits["train"].num_rows

    def texts(self, split: str = "train") -> list[str]:
        """Every text of a split (both sentences of a pair), as a tokenizer-changing step counts them."""
        rows = self.splits[split]
        return [text for column in ("sentence1", "sentence2") if column in rows.column_names
                for text in rows[column] if text]

    def tokenized(self, tokenizer: Any) -> dict[str, Any]:
        from .data import tokenize_task

        cached = self._tokenized.get(id(tokenizer))
        if cached is None or cached[0] is not tokenizer:
            cached = (tokenizer, {name: tokenize_task(rows, tokenizer, self.task, max_length=self.length)
                                  for name, rows in self.splits.items()})
            self._tokenized[id(tokenizer)] = cached
        return cached[1]


def _training_args(recipe: dict[str, Any], stage: Stage, output: Path,
                   device: torch.device | None = None) -> TrainingArguments:
    chosen = {**(recipe.get("training") or {}), **(stage.settings.get("training") or {})}
    placement = training_arguments(device, chosen) if device is not None else {}
    settings = {**DEFAULT_TRAINING, "seed": int(recipe.get("seed", 42)), **placement, **chosen}
    return TrainingArguments(output_dir=str(output / "work" / stage.folder), **settings)


def _calibration_loader(data, tokenizer, recipe: dict[str, Any]):
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    batches = int(recipe.get("calibration_batches", 32))
    rows = data["train"].select(range(min(data["train"].num_rows, 32 * batches)))
    rows = rows.rename_column("label", "labels") if "label" in rows.column_names else rows
    return DataLoader(rows, batch_size=32, shuffle=False, collate_fn=DataCollatorWithPadding(tokenizer))


def _run_stage(stage: Stage, model: Any, original: PreTrainedModel, tokenizer: Any, data, task_data: RecipeData | None,
               recipe: dict[str, Any], task: str | None, output: Path,
               device: torch.device | None = None) -> tuple[Any, Any]:
    """Run one stage; returns the model it leaves (or an export's folder) and the tokenizer that goes with it."""
    from .compress import compress

    if stage.kind == "compress":
        loader = _calibration_loader(data, tokenizer, recipe) if any(c.requires_dataloader for c in stage.configs) \
            else None
        for config in stage.configs:
            spec = get_method(config.name)
            if spec.needs_tokenizer:
                if task_data is None:
                    raise RecipeError(f"stage {stage.index} ({config.name}) counts the training texts: give the task")
                model, tokenizer = spec.apply(model, config, tokenizer=tokenizer, texts=task_data.texts("train"))
            else:
                compress(model, config, dataloader=loader if config.requires_dataloader else None)
        return model, tokenizer
    if stage.kind == "export":
        loader = _calibration_loader(data, tokenizer, recipe) if stage.export.requires_dataloader else None
        return _export(stage, model, tokenizer, output, loader), tokenizer
    return _train(stage, model, original, tokenizer, data, recipe, task, output, device), tokenizer


def _train(stage: Stage, model: PreTrainedModel, original: PreTrainedModel, tokenizer: Any, data,
           recipe: dict[str, Any], task: str, output: Path, device: torch.device | None = None) -> PreTrainedModel:
    from .finetune import build_trainer
    from .importance import IterativePruningCallback
    from .distillation import DistillationConfig
    from .trainer import CompressionTrainer

    args = _training_args(recipe, stage, output, device)
    distillation = stage.settings.get("distillation")
    if distillation is None and stage.kind == "layers":
        distillation = layer_strategies()[stage.settings.get("strategy", "truncate")].layer_stage.distillation
    kwargs: dict[str, Any] = {}
    if distillation:
        settings = dict(distillation)
        teacher = original if settings.pop("teacher", "original") == "original" else copy.deepcopy(model).eval()
        kwargs = {"teacher": teacher, "distillation": DistillationConfig(**settings)}
    callbacks, compression = [], list(stage.configs)
    iterative = stage.settings.get("iterative")
    if iterative is not None:
        callbacks.append(IterativePruningCallback(compression, _calibration_loader(data, tokenizer, recipe),
                                                  prune_every=int(iterative.get("prune_every", 50)),
                                                  reconstruct=bool(iterative.get("reconstruct", False))))
        compression = []
    trainer = build_trainer(model, tokenizer, task, args, data["train"], trainer_cls=CompressionTrainer,
                            compression=compression, callbacks=callbacks, **kwargs)
    # An iterative stage resumes too: CompressionTrainer gives the model the checkpoint's pruned structure first.
    checkpoint = _last_checkpoint(Path(args.output_dir))
    started = time.monotonic()
    outcome = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    logger.info("stage %s: %d steps in %s, training loss %.4f", stage.folder, outcome.global_step,
                _duration(time.monotonic() - started), outcome.training_loss)
    return trainer.model


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint; newer ones cut short by a kill are removed."""
    checkpoint, partial = last_complete_checkpoint(folder)
    for path in partial:
        logger.warning("removing %s: written only in part when the run stopped", path)
        shutil.rmtree(path, ignore_errors=True)
    return checkpoint


def _export(stage: Stage, model: PreTrainedModel, tokenizer: Any, output: Path, loader: Any = None) -> Path:
    runtime, _ = export_config(stage.settings.get("format", "onnx_int8"))
    work = output / "work" / stage.folder
    shutil.rmtree(work, ignore_errors=True)
    return runtime.export(model, work, stage.export, tokenizer=tokenizer, dataloader=loader)


def _save_stage(stage: Stage, model: Any, tokenizer: Any, folder: Path, device: str = "cpu") -> None:
    """Write to a temporary folder and rename: a stage folder that exists is complete (its stage.json says where
    the stage ran)."""
    with writing_folder(folder) as partial:
        if isinstance(model, Path):  # an export wrote its own folder
            shutil.copytree(model, partial, dirs_exist_ok=True)
        else:
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
        record = {**_stage_record(stage), "device": device}
        (partial / "stage.json").write_text(json.dumps(record, indent=1), encoding="utf-8")


def _stage_record(stage: Stage) -> dict[str, Any]:
    """What a stage did, as results.json, stage.json and the card's "How it was made" list show it."""
    record: dict[str, Any] = {"stage": stage.kind, "name": stage.name, "folder": str(Path("stages") / stage.folder)}
    if stage.configs:
        record["methods"] = [{"method": c.name, **c.to_dict()} for c in stage.configs]
    for key in ("strategy", "iterative", "distillation", "training", "format"):
        if stage.settings.get(key) is not None:
            record[key] = stage.settings[key]
    return record


def reuse_finished_stages(recipe: dict[str, Any], folder: Path, donors: list[tuple[dict[str, Any], Path]]
                          ) -> dict[str, Any] | None:
    """Copy into ``folder/stages`` the longest run of first stages that a donor pipeline (same data and settings,
    the same first stages) has finished, so the pipeline starts after them; None when no donor shares a stage.

    Example:
        >>> reuse_finished_stages(recipe_3_layers_then_int8, Path("trial-7/model"), [(recipe_3_layers, Path("trial-2/model"))])
        {'stages': 1, 'from': 'trial-2/model'}
    """
    settings = {k: v for k, v in recipe.items() if k != "stages"}
    best, best_count = None, 0
    for donor_recipe, donor_folder in donors:
        if {k: v for k, v in donor_recipe.items() if k != "stages"} != settings:
            continue
        count = 0
        for mine, theirs in zip(recipe["stages"], donor_recipe["stages"]):
            if mine != theirs:
                break
            count += 1
        count = min(count, len(recipe["stages"]) - 1)  # the last stage is this candidate's own
        stages = validate_recipe(recipe)[:count]
        if count > best_count and all((Path(donor_folder) / "stages" / st.folder).is_dir() for st in stages):
            best, best_count = donor_folder, count
    if best is None:
        return None
    for stage in validate_recipe(recipe)[:best_count]:
        target = folder / "stages" / stage.folder
        if not target.is_dir():
            with writing_folder(target) as partial:
                shutil.copytree(Path(best) / "stages" / stage.folder, partial, dirs_exist_ok=True)
    logger.info("%s: first %d stage(s) copied from %s", folder, best_count, best)
    return {"stages": best_count, "from": str(best)}


def stage_records(recipe: str | os.PathLike | dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of a recipe as a finished pipeline records them (for a card written elsewhere)."""
    return [_stage_record(stage) for stage in validate_recipe(load_recipe(recipe))]


def load_model(folder: str | os.PathLike) -> Any:
    """A pipeline's result: the runtime's runner for an export (:class:`OnnxSequenceClassifier`, ...), else the
    Auto class model."""
    runtime = runtime_for_folder(folder)
    if runtime is not None:
        return runtime.runner.from_pretrained(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def measure_against_original(original: PreTrainedModel, folder: Path, dataset: Any, task: str, name: str,
                             rounds: dict[int, int], final_dataset: Any = None,
                             device: torch.device | None = None) -> dict[str, Any]:
    """The original and the model in ``folder`` scored on ``dataset`` and timed in alternation, in one run
    (``final_dataset``: the same rows in the compressed model's own tokenization, where it changed). Both run on
    ``device`` (default: the CPU), unless the final model runs on the CPU only (a runtime's export, int8 modules):
    then both run on the CPU."""
    from .benchmark import add_ratios, benchmark_rows, hardware, weights_size_bytes
    from .data import get_task

    loaded = load_model(folder)
    where = device or torch.device("cpu")
    if not isinstance(loaded, torch.nn.Module) or holds_int8(loaded):
        where = torch.device("cpu")
    original = original.to(where)
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.to(where)
    final = {"name": name, "model": loaded, "size_bytes": weights_size_bytes(folder)}
    if final_dataset is not None:
        final["eval_dataset"] = final_dataset
    rows = benchmark_rows([{"name": "original", "model": original}, final],
                          eval_dataset=dataset, task=task, rounds=rounds)
    add_ratios(rows, "original")
    return {"task": task, "metric": get_task(task).main_metric, "dev_rows": dataset.num_rows, "rows": rows,
            "hardware": hardware()}


__all__ = ["BudgetExceededError", "PipelineResult", "RecipeData", "RecipeError", "Stage", "load_model", "load_recipe", "measure_against_original",
           "run_pipeline", "stage_records", "validate_recipe", "warn_if_lost"]
