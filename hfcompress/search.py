"""Budget search: the fastest compressed model within an accuracy budget, measured on this machine.

Each candidate is a pipeline recipe (:mod:`hfcompress.pipeline`) built from a point of the search
space: layer count (truncation with distillation, or Theseus), head and FFN fractions removed
(then a distilled fine-tune) or a kept share of head + FFN FLOPs removed with no fine-tuning
(retraining-free Fisher pruning with reconstruction, minutes on a CPU), low-rank ratio, and int8
(torch, ONNX Runtime, OpenVINO, or none) with its module set. A candidate is scored on rows held out for the search
(a part of train, or ``eval_file`` / ``eval_split``; never the dev set that is reported) and timed at batch 1 and
32 against the original model in the same process.

The order follows cost. A new study starts with the candidates that need no training, every one of them
(retraining-free pruning at each kept-FLOPs level and int8 on each runtime, alone and together), then the
library's known-good training recipe (layers halved + distillation + int8); the sampler takes over after that.
Every feasible candidate is also measured in each int8 form (a post-training step of seconds, recorded as a
trial of its own that does not count toward ``n_trials``), and a candidate whose first stages match a finished
trial's copies them instead of training them again. Weak trainers stop early: each first trains with a quarter
of the step budget, and one already more than ``max_drop + early_stop_margin`` points below the original is
pruned. An Optuna multi-objective study (score up, batch-1 latency down; the budget as a constraint) chooses
the points, and lives in an SQLite (or any RDB) storage: an interrupted search resumes where it stopped, and
several workers given the same ``storage`` share one study. Each worker that ends re-times the front, chooses and
reports on dev; workers started with ``explore_only`` only add trials and leave that to one that does not.

The reference is honest: a model fine-tuned on all of train has seen the held-out rows, so where the
original scores far higher on them than on dev (``seen_gap`` points), the budget is judged on agreement with
the original's predictions on those rows instead of on their labels (``reference="auto"``), and the front, the
log and the card say so. Rows it never saw (``eval_file`` / ``eval_split``) keep the labels.

Example:
    >>> result = search("my-sst2-model", task="sst2", output="out/search", max_drop=1.0, n_trials=24)
    >>> result.chosen["recipe"]          # also out/search/chosen.yaml: `hfcompress compress --config` rebuilds it
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .atomic import writing_folder
from .devices import resolve_device
from .pipeline import reuse_finished_stages

logger = logging.getLogger(__name__)

STUDY_NAME = "hfcompress-search"
REFERENCES = ("auto", "labels", "agreement")
TRAINING_STAGE_KINDS = ("layers", "train")
INT8_CHOICES = ("none", "torch", "onnxruntime", "openvino")
INT8_MODULES = {"attention+ffn": ["attention", "ffn"], "attention+ffn_in": ["attention", "ffn_in"]}
INT8_MODULES_DEFAULT = "attention+ffn"
INT8_PREFERENCE = ("openvino", "onnxruntime", "torch")  # the int8 runtime tried first: fastest on CPUs measured


def _available_int8() -> list[str]:
    """The int8 runtimes this machine can run (OpenVINO only where its optional packages are installed)."""
    from .runtimes import runtimes

    installed = {spec.name for spec in runtimes(installed=True) if spec.int8_formats()} | {"none", "torch"}
    return [c for c in INT8_CHOICES if c in installed]


@dataclass
class SearchSpace:
    """What the search may choose. ``layers=None``: about 1, 2/3, 1/2 and 1/3 of the model's layers."""

    layers: list[int] | None = None
    strategies: list[str] = field(default_factory=lambda: list(_space_plan()["layers"]["strategies"]))
    head_fractions: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    ffn_fractions: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    # Kept head + FFN FLOPs after retraining-free pruning; when chosen it replaces the fine-tuned head/FFN removal.
    # 0.4 is where the hand-written pipelines found their best trade within 1% (MiniLM SST-2 and MRPC, int8).
    retraining_free: list[float | None] = field(default_factory=lambda: [None, 0.7, 0.5, 0.4])
    lowrank_ratios: list[float | None] = field(default_factory=lambda: [None, 0.75, 0.5])
    int8: list[str] = field(default_factory=lambda: _available_int8())
    int8_modules: list[str] = field(default_factory=lambda: list(INT8_MODULES))

    def layer_choices(self, num_layers: int) -> list[int]:
        if self.layers:
            return sorted({int(n) for n in self.layers if 1 <= n <= num_layers}, reverse=True)
        return sorted({num_layers, math.ceil(2 * num_layers / 3), max(1, num_layers // 2), max(1, num_layers // 3)},
                      reverse=True)


@dataclass
class SearchResult:
    """The Pareto front (feasible candidates, fastest first), the chosen candidate and where it was saved."""

    front: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    output: Path
    reference_score: float
    trials: list[dict[str, Any]]


def candidate_recipe(params: dict[str, Any], num_layers: int, base: dict[str, Any], steps: int) -> dict[str, Any]:
    """The pipeline recipe of one point of the search space (training stages get ``steps`` steps each); which
    stages and methods realise each dimension is declared in ``search_space.yaml`` beside this module.

    Example:
        >>> candidate_recipe({"layers": 3, "strategy": "truncate", "heads": 0.5, "ffn": 0.0, "lowrank": None,
        ...                   "int8": "onnxruntime", "int8_modules": "attention+ffn"}, 6, {"task": "sst2"}, 400)
    """
    plan = _space_plan()
    stages: list[dict[str, Any]] = []
    training = {"max_steps": steps, "save_steps": max(steps // 2, 1)}
    if params["layers"] < num_layers:
        distillation = plan["layers"]["distillation"]
        stages.append({**plan["layers"]["stage"], "strategy": params["strategy"], "layers": params["layers"],
                       "training": training,
                       "distillation": dict(distillation.get(params["strategy"], distillation["default"]))})
    if params.get("retraining_free"):
        stages.append(_filled(plan["retraining_free"], VALUE=params["retraining_free"]))
    methods = [_filled(template, VALUE=params[dimension]) for dimension, template in plan["train"]["methods"].items()
               if params.get(dimension)]
    if methods:
        stages.append({"stage": "train", "methods": methods, "training": training,
                       "distillation": dict(plan["train"]["distillation"])})
    if params["int8"] != "none":
        stages.append(_filled(plan["int8"][params["int8"]], MODULES=INT8_MODULES[params["int8_modules"]],
                              FFN_OUT_FLOAT=params["int8_modules"] == "attention+ffn_in"))
    return {**copy.deepcopy(base), "stages": stages}


def _space_plan() -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).with_name("search_space.yaml")).read_text(encoding="utf-8"))


def _filled(template: dict[str, Any], **values: Any) -> dict[str, Any]:
    """``template`` with each placeholder value (VALUE, MODULES, ...) replaced."""
    return {key: values.get(value, value) if isinstance(value, str) else copy.deepcopy(value)
            for key, value in template.items()}


def _suggest(trial: Any, space: SearchSpace, num_layers: int) -> dict[str, Any]:
    params = {
        "layers": trial.suggest_categorical("layers", space.layer_choices(num_layers)),
        "strategy": trial.suggest_categorical("strategy", space.strategies),
        "heads": trial.suggest_categorical("heads", space.head_fractions),
        "ffn": trial.suggest_categorical("ffn", space.ffn_fractions),
        "lowrank": trial.suggest_categorical("lowrank", space.lowrank_ratios),
        "int8": trial.suggest_categorical("int8", space.int8),
        "int8_modules": trial.suggest_categorical("int8_modules", space.int8_modules),
        "retraining_free": trial.suggest_categorical("retraining_free", space.retraining_free),
    }
    if params["retraining_free"]:
        # One way of removing heads and neurons per candidate: the fractions are moot (and two trials that differ
        # only in them are the same candidate, evaluated once).
        params["heads"] = params["ffn"] = 0.0
    if params["int8"] in ("none", "openvino"):  # no module choice there: one candidate, not two
        params["int8_modules"] = INT8_MODULES_DEFAULT
    return params


def changes_nothing(params: dict[str, Any], num_layers: int) -> bool:
    """Whether a point of the space is the original model itself (nothing to measure)."""
    return (params["layers"] >= num_layers and not params["heads"] and not params["ffn"] and not params["lowrank"]
            and not params.get("retraining_free") and params["int8"] == "none")


def first_candidates(space: SearchSpace, num_layers: int) -> list[tuple[str, dict[str, Any]]]:
    """What a new study tries first, in order, each with why: the candidates that need no training (each
    retraining-free kept-FLOPs level, and the original, in int8 on the fastest runtime we ship; the other int8
    forms follow for free where a candidate is feasible), then the known-good training recipe (about half the
    layers, distilled, int8).

    Example:
        >>> [(why, p["retraining_free"], p["layers"]) for why, p in first_candidates(SearchSpace(), 6)]
        [('no training', 0.7, 6), ('no training', 0.5, 6), ('no training', 0.4, 6), ('no training', None, 6),
         ('known-good recipe', None, 3)]
    """
    layers = space.layer_choices(num_layers)
    runtime = next((r for r in INT8_PREFERENCE if r in space.int8), "none")
    strategy = space.strategies[0]
    plain = {"layers": layers[0], "strategy": strategy,
             "heads": 0.0 if 0.0 in space.head_fractions else space.head_fractions[0],
             "ffn": 0.0 if 0.0 in space.ffn_fractions else space.ffn_fractions[0],
             "lowrank": None if None in space.lowrank_ratios else space.lowrank_ratios[0],
             "int8": runtime, "int8_modules": space.int8_modules[0]}
    found = []
    if layers[0] >= num_layers:
        levels = [level for level in sorted({lv for lv in space.retraining_free if lv}, reverse=True)]
        found += [("no training", {**plain, "retraining_free": level}) for level in levels]
        if None in space.retraining_free:
            found.append(("no training", {**plain, "retraining_free": None}))
        found = [(why, p) for why, p in found if not changes_nothing(p, num_layers)]
    reduced = [n for n in layers if n < num_layers]
    if reduced and None in space.retraining_free:
        half = min(reduced, key=lambda n: abs(n - num_layers / 2))
        found.append(("known-good recipe", {**plain, "layers": half, "retraining_free": None}))
    return found


def search(
    model: str,
    *,
    task: str,
    output: str | os.PathLike,
    data_dir: str | None = None,
    max_drop: float | None = None,
    max_latency_ms: float | None = None,
    n_trials: int = 24,
    budget_hours: float | None = None,
    storage: str | None = None,
    steps: int = 200,
    holdout: float = 0.1,
    max_train_samples: int | None = None,
    max_seq_length: int = 128,
    training: dict[str, Any] | None = None,
    space: SearchSpace | None = None,
    seed: int = 42,
    early_stop_margin: float = 3.0,
    latency_rounds: int = 20,
    measure_dev: bool = True,
    final_steps: int | None = None,
    heartbeat_seconds: int = 60,
    eval_file: str | os.PathLike | None = None,
    eval_split: str | None = None,
    reference: str = "auto",
    seen_gap: float = 5.0,
    device: str | None = None,
    explore_only: bool = False,
) -> SearchResult:
    """Search compressed versions of ``model`` for the fastest within the budget; see the module docstring.

    ``max_drop`` (points of the task's main metric, on the held-out split) and/or ``max_latency_ms``
    (batch 1, sequence 128, on this machine) are the budget; without ``max_latency_ms`` the
    fastest feasible candidate is chosen, with it alone the best-scoring one under it.
    ``n_trials`` counts every worker's trials together; ``budget_hours`` stops this worker.
    ``final_steps``: candidates are compared after ``steps`` steps per training stage (cheap); the chosen
    one is then trained again with ``final_steps`` steps before it is saved, so the search explores at a
    short budget and delivers at the full one (``chosen.yaml`` holds the full-budget recipe).
    ``eval_file`` (a labelled file in the task's layout) or ``eval_split`` (a split of the task's data): rows the
    original never saw, scored instead of ``holdout`` of train. ``reference``: "labels" (the rows' labels),
    "agreement" (the original's predictions on them) or "auto": labels, unless the original scores more than
    ``seen_gap`` points higher on the held-out rows than on dev (it has likely trained on them).
    ``device`` (auto | cpu | cuda): where candidates train; latency is always timed on the CPU, the machine the
    search's int8 runtimes serve on (every candidate against the original there).
    ``explore_only``: this worker adds trials to the study and returns its front as the trials measured it, without
    re-timing, choosing (``chosen`` is None) or the dev report: the extra workers of a shared study, whose choice
    one worker (or a later run with the budget spent) makes once.

    Example:
        >>> search("my-sst2-model", task="sst2", output="out/search", max_drop=1.0, n_trials=24, steps=400)
    """
    import optuna
    from transformers import AutoConfig

    if max_drop is None and max_latency_ms is None:
        raise ValueError("give the budget: max_drop (points of the task's metric) and/or max_latency_ms (batch 1)")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1): the search scores on that part of train; got {holdout}")
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}; got {reference!r}")
    if isinstance(latency_rounds, bool) or not isinstance(latency_rounds, int) or latency_rounds < 1:
        raise ValueError(f"latency_rounds must be a positive whole number of timing rounds; got {latency_rounds!r}")
    if eval_file is not None and eval_split is not None:
        raise ValueError("give held-out rows one way: eval_file or eval_split, not both")
    device = str(resolve_device(device or "auto"))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    space = space or SearchSpace()
    num_layers = _num_layers(AutoConfig.from_pretrained(model))
    base = _base_recipe(task, data_dir, max_seq_length, holdout, seed, training, max_train_samples)
    if eval_file is not None:
        base["holdout_file"] = str(Path(eval_file).resolve())
    elif eval_split is not None:
        base["holdout_split"] = eval_split
    evaluator = _Evaluator(model, task, data_dir, base, latency_rounds, device)
    judged = evaluator.choose_reference(reference, seen_gap, unseen_rows=eval_file is not None or eval_split is not None)
    reference_score = evaluator.reference_score()

    sampler = optuna.samplers.TPESampler(seed=seed + os.getpid() % 1000, multivariate=True,
                                         constraints_func=_constraints, n_startup_trials=min(8, n_trials))
    study = _open_study(storage, sampler, heartbeat_seconds=heartbeat_seconds)
    study.set_user_attr("reference_score", reference_score)
    study.set_user_attr("reference", judged)
    study.set_user_attr("budget", {"max_drop": max_drop, "max_latency_ms": max_latency_ms})
    if not study.get_trials(deepcopy=False):  # a new study: the cheap and the known-good candidates first
        for why, params in first_candidates(space, num_layers):
            study.enqueue_trial(params, user_attrs={"first_because": why}, skip_if_exists=True)
    objective = _Objective(study, space, num_layers, base, steps, evaluator, output,
                           threshold=None if max_drop is None else reference_score - max_drop - early_stop_margin,
                           min_score=None if max_drop is None else reference_score - max_drop,
                           max_latency_ms=max_latency_ms)
    _optimize(study, objective, n_trials, budget_hours, output)
    if explore_only:
        rows = _trial_rows(study)
        logger.info("explored: %d trials in the study; a worker without explore_only chooses", len(rows))
        return SearchResult(pareto_front(rows), None, output, reference_score, rows)
    final = None
    if final_steps and final_steps != steps:
        final = lambda params: candidate_recipe(params, num_layers, base, final_steps)  # noqa: E731
    return _finish(study, output, reference_score, max_drop, max_latency_ms, evaluator, measure_dev, final)


def _base_recipe(task: str, data_dir: str | None, max_seq_length: int, holdout: float, seed: int,
                 training: dict[str, Any] | None, max_train_samples: int | None) -> dict[str, Any]:
    """What every candidate's recipe shares: task, data, holdout, seed, training defaults."""
    base = {"task": task, "max_seq_length": max_seq_length, "holdout": holdout, "seed": seed,
            "training": dict(training or {})}
    if max_train_samples:
        base["max_train_samples"] = max_train_samples
    if data_dir:
        base["data_dir"] = data_dir
    return base


class _Objective:
    """One trial: suggest a candidate, reuse a duplicate's numbers, stop a weak trainer early, measure, record."""

    def __init__(self, study: Any, space: SearchSpace, num_layers: int, base: dict[str, Any], steps: int,
                 evaluator: "_Evaluator", output: Path, *, threshold: float | None, min_score: float | None,
                 max_latency_ms: float | None) -> None:
        self.study, self.space, self.num_layers, self.base, self.steps = study, space, num_layers, base, steps
        self.evaluator, self.output = evaluator, output
        self.threshold, self.min_score, self.max_latency_ms = threshold, min_score, max_latency_ms

    def __call__(self, trial: Any) -> tuple[float, float]:
        import optuna

        params = _suggest(trial, self.space, self.num_layers)
        if changes_nothing(params, self.num_layers):
            trial.set_user_attr("constraints", [1.0])
            raise optuna.TrialPruned("this point of the space is the original model itself")
        duplicate = _finished_with(self.study, params, trial.number)
        if duplicate is not None:  # the same candidate is evaluated once; its numbers are reused
            for key, value in duplicate.user_attrs.items():
                if key != "free_step_of":
                    trial.set_user_attr(key, value)
            trial.set_user_attr("duplicate_of", duplicate.number)
            return tuple(duplicate.values)
        # A retried trial (its worker died) carries the first attempt's attributes: same folder, same short score.
        number = trial.user_attrs.get("folder_number", trial.number)
        trial.set_user_attr("folder_number", number)
        folder = self.output / "trials" / f"trial-{number:04d}"
        recipe = candidate_recipe(params, self.num_layers, self.base, self.steps)
        reused = reuse_finished_stages(recipe, folder / "model", _donors(self.study))
        if reused:
            trial.set_user_attr("reused_stages", reused)
        copied_training = bool(reused) and any(stage["stage"] in TRAINING_STAGE_KINDS
                                               for stage in recipe["stages"][:reused["stages"]])
        if not copied_training:  # a copied training stage already trained at the full budget: no short run first
            self._stop_early_if_weak(trial, params, recipe, folder)
        measured = self._record(trial, params, recipe, folder / "model")
        if all(v <= 0 for v in trial.user_attrs["constraints"]):
            self._free_int8_forms(trial, params, recipe, folder)
        return measured["score"], measured["latency_ratio_bs1"]

    def _record(self, trial: Any, params: dict[str, Any], recipe: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Run and measure a candidate; its numbers, recipe and budget violations, also set on ``trial`` when one
        is given (a free int8 form gets them as the attributes of the trial it is added as)."""
        measured = self.evaluator.measure(recipe, folder)
        violations = []
        if self.min_score is not None:
            violations.append(self.min_score - measured["score"])
        if self.max_latency_ms is not None:
            violations.append(measured["latency_bs1_ms"] - self.max_latency_ms)
        attrs = {"recipe": recipe, "folder": str(folder), "params_dict": params, **measured, "constraints": violations}
        if trial is not None:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        return attrs

    def _free_int8_forms(self, trial: Any, params: dict[str, Any], recipe: dict[str, Any], folder: Path) -> None:
        """The feasible candidate in each int8 form it was not tried in: the same stages (copied from this trial)
        with another int8 step, seconds each; each a trial of its own that ``n_trials`` does not count."""
        import optuna

        for int8 in self.space.int8:
            variant = {**params, "int8": int8, "int8_modules": INT8_MODULES_DEFAULT}
            if int8 in (params["int8"], "none") or _finished_with(self.study, variant, -1) is not None:
                continue
            variant_recipe = candidate_recipe(variant, self.num_layers, self.base, self.steps)
            variant_folder = folder.parent / f"{folder.name}-{int8}"
            reused = reuse_finished_stages(variant_recipe, variant_folder / "model", [(recipe, folder / "model")])
            measured = self._record(None, variant, variant_recipe, variant_folder / "model")
            attrs = {"free_step_of": trial.number, "reused_stages": reused, **measured}
            suggested = {**trial.params, "int8": int8, "int8_modules": INT8_MODULES_DEFAULT}
            self.study.add_trial(optuna.trial.create_trial(
                params=suggested, distributions=_distributions(self.space, self.num_layers),
                values=[measured["score"], measured["latency_ratio_bs1"]], user_attrs=attrs))
            logger.info("trial %d in %s int8: held-out %.2f, %.2fx faster at batch 1", trial.number, int8,
                        measured["score"], 1 / measured["latency_ratio_bs1"])

    def _stop_early_if_weak(self, trial: Any, params: dict[str, Any], recipe: dict[str, Any], folder: Path) -> None:
        """A candidate that trains is first trained with a quarter of the steps; far below the budget, it stops."""
        import optuna

        if self.threshold is None or not any(s["stage"] in TRAINING_STAGE_KINDS for s in recipe["stages"]):
            return
        short_steps = max(1, self.steps // 4)
        early = trial.user_attrs.get("short_score")
        if early is None:
            early = self.evaluator.score(candidate_recipe(params, self.num_layers, self.base, short_steps),
                                         folder / "short")
            trial.set_user_attr("short_score", early)
            shutil.rmtree(folder / "short", ignore_errors=True)
        if early < self.threshold:
            trial.set_user_attr("constraints", [1.0])
            raise optuna.TrialPruned(f"score after {short_steps} steps {early:.2f} < {self.threshold:.2f}")


def _donors(study: Any) -> list[tuple[dict[str, Any], Path]]:
    """Finished trials' recipes and folders (the pipelines a new candidate may take its first stages from)."""
    import optuna

    return [(t.user_attrs["recipe"], Path(t.user_attrs["folder"]))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "recipe" in t.user_attrs and "duplicate_of" not in t.user_attrs]


def _distributions(space: SearchSpace, num_layers: int) -> dict[str, Any]:
    """The distributions ``_suggest`` draws from (a trial added by hand must declare the same)."""
    from optuna.distributions import CategoricalDistribution

    return {"layers": CategoricalDistribution(space.layer_choices(num_layers)),
            "strategy": CategoricalDistribution(space.strategies),
            "heads": CategoricalDistribution(space.head_fractions), "ffn": CategoricalDistribution(space.ffn_fractions),
            "lowrank": CategoricalDistribution(space.lowrank_ratios), "int8": CategoricalDistribution(space.int8),
            "int8_modules": CategoricalDistribution(space.int8_modules),
            "retraining_free": CategoricalDistribution(space.retraining_free)}


class _StopAtBudget:
    """Stop once ``n_trials`` trials count: finished, pruned, running or queued for a retry (so workers stop
    starting new candidates while a retry waits); free int8 forms of a trial and the queued first candidates
    not started yet do not count."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        retries = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
                   if "folder_number" in t.user_attrs]  # a dead worker's trial queued again (not the first candidates)
        if _counted(study) + len(retries) >= self.n_trials:
            study.stop()


def _optimize(study: Any, objective: _Objective, n_trials: int, budget_hours: float | None, output: Path) -> None:
    """Run this worker's share of the trials (a stale trial of a dead worker is failed and queued again first)."""
    import optuna

    callbacks = [_StopAtBudget(n_trials), _LiveTable(output)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial (no heartbeat): failed, and queued again
    import sqlalchemy.exc

    try:
        remaining = n_trials - _counted(study)
        if remaining > 0:  # re-running a finished search only rebuilds its report
            study.optimize(objective, n_trials=remaining, timeout=budget_hours * 3600 if budget_hours else None,
                           callbacks=callbacks, catch=(), show_progress_bar=True)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
        # A database that went away: what it holds is safe; say so in one line, without the URL's password.
        raise StorageUnreachableError(
            f"the study's storage {_shown_storage(study)} stopped answering ({str(error.orig).strip().splitlines()[0]}); "
            "every finished trial is kept there: run the same command again once it is back to continue") from error


class StorageUnreachableError(OSError):
    """The search's database stopped answering mid-run; finished trials are kept and a re-run continues."""


def _shown_storage(study: Any) -> str:
    """The storage URL as it may be printed: any password replaced by ***."""
    url = getattr(getattr(study, "_storage", None), "url", None) or "(database)"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL (a journal file): nothing secret in it
        return str(url)


def _open_study(storage: str, sampler: Any, attempts: int = 5, heartbeat_seconds: int = 60) -> Any:
    """Create or join the study. Workers started together on a new database race to create its schema (the
    loser gets an IntegrityError / "table already exists"): the loser waits and joins what the winner made.

    SQL and journal storages get a heartbeat: a trial whose worker stopped beating (killed, machine lost) is marked
    failed by the next worker that starts a trial and queued again with the same candidate, which then
    continues in the same trial folder from its last checkpoint.
    """
    import optuna
    import sqlalchemy.exc

    def create() -> Any:
        backend: Any = storage
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback
        if storage.startswith("journal:"):
            # A file on a shared filesystem, for clusters without a database server.
            backend = _journal_with_heartbeat(storage.removeprefix("journal:"), heartbeat_seconds, retry(max_retry=2))
        elif storage.startswith(("sqlite", "postgresql", "mysql", "oracle", "mssql")):
            backend = optuna.storages.RDBStorage(storage, heartbeat_interval=heartbeat_seconds,
                                                 grace_period=3 * heartbeat_seconds,
                                                 failed_trial_callback=retry(max_retry=2))
        return optuna.create_study(study_name=STUDY_NAME, storage=backend, load_if_exists=True,
                                   directions=["maximize", "minimize"], sampler=sampler)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
        warnings.simplefilter("ignore", FutureWarning)
        for attempt in range(attempts - 1):
            try:
                return create()
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError,
                    sqlalchemy.exc.ProgrammingError) as error:
                # PostgreSQL reports the lost race on the schema as DuplicateTable, a ProgrammingError: only that
                # one is waited out, any other programming error is raised as it is.
                if isinstance(error, sqlalchemy.exc.ProgrammingError) and "already exists" not in str(error):
                    raise
                time.sleep(0.5 * (attempt + 1))
        return create()


def _journal_with_heartbeat(path: str, heartbeat_seconds: int, on_stale: Any) -> Any:
    """Optuna's journal file storage with the heartbeat its RDB storage has (Optuna gives the journal none, so a
    killed worker's trial would stay "running" for ever): each running trial records the wall-clock time every
    ``heartbeat_seconds`` in a system attribute; one silent for three intervals is stale, and the next worker to
    start a trial fails it and queues it again (``on_stale``). Workers on several machines need clocks that agree
    to well within three intervals (NTP does).

    Example:
        >>> storage = _journal_with_heartbeat("study.journal", 60, None)  # doctest: +SKIP
    """
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.storages.journal import JournalFileBackend

    class JournalStorageWithHeartbeat(optuna.storages.JournalStorage, BaseHeartbeat):
        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker already failed this trial as stale: nothing left to keep alive

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            return [t._trial_id for t in running
                    if now - t.system_attrs.get(HEARTBEAT_ATTR, t.datetime_start.timestamp()) > 3 * heartbeat_seconds]

        def get_heartbeat_interval(self) -> int:
            return heartbeat_seconds

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return on_stale

        def get_failed_trial_callback(self) -> Any:  # the name before Optuna 4.9
            return on_stale

    return JournalStorageWithHeartbeat(JournalFileBackend(path))


HEARTBEAT_ATTR = "hfcompress:heartbeat"


def _counted_states() -> tuple:
    """Trials that count toward ``n_trials``: failed ones do not (their retry does)."""
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)


def _counted(study: Any, extra_states: tuple = ()) -> int:
    return sum("free_step_of" not in t.user_attrs
               for t in study.get_trials(deepcopy=False, states=(*_counted_states(), *extra_states)))


def _num_layers(config: Any) -> int:
    from .adapters import get_adapter

    return get_adapter(config).num_layers(config)


def _constraints(trial: Any) -> list[float]:
    return trial.user_attrs.get("constraints", [0.0])


def _finished_with(study: Any, params: dict[str, Any], number: int) -> Any:
    import optuna

    for other in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if other.number != number and other.user_attrs.get("params_dict") == params:
            return other
    return None


class _Evaluator:
    """Runs candidate recipes and measures them: held-out score, latency against the original in one process."""

    def __init__(self, model: str, task: str, data_dir: str | None, base: dict[str, Any], rounds: int,
                 device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .pipeline import RecipeData

        self.model_path, self.task, self.data_dir, self.rounds, self.device = model, task, data_dir, rounds, device
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.data = RecipeData(base, task, data_dir).tokenized(self.tokenizer)
        self.original = AutoModelForSequenceClassification.from_pretrained(model).eval()
        self.judge = "labels"
        self._original_predictions = None

    def timing_rounds(self, batch: int, report: bool = False) -> int:
        """Rounds against the original at ``batch`` (1 or 32): ``rounds`` at batch 1, a quarter (at least 3) at 32;
        the dev report of the pick half as many again at batch 1 and half at 32."""
        if report:
            return self.rounds * 3 // 2 if batch == 1 else max(3, self.rounds // 2)
        return self.rounds if batch == 1 else max(3, self.rounds // 4)

    def choose_reference(self, reference: str, seen_gap: float, unseen_rows: bool) -> dict[str, Any]:
        """Labels or agreement with the original (see :func:`search`); logged, and returned for the front and card."""
        from .data import get_task

        held_out = self._label_score(self.original, self.data["holdout"])
        dev = self._label_score(self.original, self.data["validation"])
        gap = held_out - dev
        regression = get_task(self.task).is_regression
        if reference == "auto":
            reference = "agreement" if gap > seen_gap and not unseen_rows and not regression else "labels"
            why = (f"the original scores {held_out:.2f} on the held-out rows and {dev:.2f} on dev: it has likely "
                   "trained on them, so their labels would measure forgetting, not generalisation; give --eval_file "
                   "or --eval_split with rows it never saw to judge on labels" if reference == "agreement" else
                   f"held-out rows the original never saw ({held_out:.2f} there, {dev:.2f} on dev)" if unseen_rows
                   else f"the original scores {held_out:.2f} on the held-out rows and {dev:.2f} on dev (within "
                        f"{seen_gap:g} points)")
        else:
            why = "chosen by the caller"
        if reference == "agreement" and regression:
            raise ValueError("reference='agreement' needs a classification task; this one is a regression")
        self.judge = reference
        logger.log(logging.WARNING if reference == "agreement" else logging.INFO,
                   "search judges the budget on %s: %s", "agreement with the original's predictions"
                   if reference == "agreement" else "the held-out rows' labels", why)
        return {"judged_on": reference, "why": why, "original_held_out": held_out, "original_dev": dev,
                "held_out_rows": self.data["holdout"].num_rows}

    def reference_score(self) -> float:
        return self._score(self.original)

    def _label_score(self, model: Any, dataset: Any) -> float:
        from .benchmark import evaluate_model
        from .data import get_task

        return 100.0 * evaluate_model(model, dataset, self.task)[get_task(self.task).main_metric]

    def _score(self, model: Any) -> float:
        """The held-out score a candidate is judged by: its main metric on the labels, or the share of rows on
        which it predicts what the original predicts."""
        if self.judge == "labels":
            return self._label_score(model, self.data["holdout"])
        from .benchmark import predict

        if self._original_predictions is None:
            self._original_predictions = predict(self.original, self.data["holdout"]).argmax(-1)
        return 100.0 * float((predict(model, self.data["holdout"]).argmax(-1) == self._original_predictions).mean())

    def _run(self, recipe: dict[str, Any], folder: Path) -> Any:
        from .pipeline import load_model, run_pipeline

        run_pipeline(recipe, model=self.model_path, output=folder, task=self.task, data_dir=self.data_dir,
                     measure=False, device=self.device)
        return load_model(folder)

    def score(self, recipe: dict[str, Any], folder: Path) -> float:
        return self._score(self._run(recipe, folder))

    def measure(self, recipe: dict[str, Any], folder: Path) -> dict[str, Any]:
        from .benchmark import count_parameters, paired_latency, weights_size_bytes

        model = self._run(recipe, folder)
        measured: dict[str, Any] = {"score": self._score(model), "size_bytes": weights_size_bytes(folder)}
        measured["params"] = count_parameters(model) if hasattr(model, "parameters") else getattr(
            model, "num_parameters", None)
        for batch in (1, 32):
            timing = paired_latency({"original": self.original, "candidate": model}, [("candidate", "original")],
                                    batch_size=batch, seq_len=128, threads=2, warmup=3,
                                    rounds=self.timing_rounds(batch))
            measured[f"latency_bs{batch}_ms"] = timing["median_ms"]["candidate"]
            measured[f"latency_ratio_bs{batch}"] = timing["ratios"]["candidate / original"]["median"]
        return measured


class _LiveTable:
    """After every trial: the current front, printed and written to OUTPUT/front.md."""

    def __init__(self, output: Path) -> None:
        self.output = output

    def __call__(self, study: Any, trial: Any) -> None:
        front = pareto_front(_trial_rows(study))
        table = format_front(front)
        (self.output / "front.md").write_text(_reference_line(study.user_attrs.get("reference")) + table + "\n",
                                              encoding="utf-8")
        logger.info("\nafter trial %d (%s): front of %d\n%s", trial.number, trial.state.name.lower(), len(front), table)


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    import optuna

    rows = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        if "score" not in attrs:
            continue
        rows.append({"trial": trial.number, "candidate": attrs.get("params_dict", trial.params),
                     "feasible": all(v <= 0 for v in attrs.get("constraints", [0.0])),
                     **{k: attrs[k] for k in ("score", "latency_bs1_ms", "latency_bs32_ms", "latency_ratio_bs1",
                                              "latency_ratio_bs32", "params", "size_bytes", "folder", "recipe",
                                              "duplicate_of", "free_step_of", "first_because", "reused_stages")
                        if k in attrs}})
    return rows


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feasible rows no other feasible row beats on both score and batch-1 latency ratio; fastest first."""
    feasible = [r for r in rows if r["feasible"] and "duplicate_of" not in r]
    front = [r for r in feasible
             if not any(o["score"] >= r["score"] and o["latency_ratio_bs1"] <= r["latency_ratio_bs1"]
                        and (o["score"] > r["score"] or o["latency_ratio_bs1"] < r["latency_ratio_bs1"])
                        for o in feasible)]
    return sorted(front, key=lambda r: r["latency_ratio_bs1"])


def format_front(front: list[dict[str, Any]]) -> str:
    """The trials as the committed results table shows them: every searched dimension, score and speed."""
    lines = ["| trial | layers | heads cut | FFN cut | retraining-free kept FLOPs | low-rank | int8 | held-out score | "
             "bs1 ms | bs1 vs original | bs32 vs original |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in front:
        p = row["candidate"]
        layers = f"{p['layers']}" if _keeps_layers(row) else f"{p['layers']} ({p['strategy']})"
        int8 = f"{p['int8']}{'' if p['int8'] in ('none', 'openvino') else ' ' + p['int8_modules']}"
        trial = f"{row['trial']}" + (f" (int8 form of {row['free_step_of']})" if "free_step_of" in row else "")
        lines.append(f"| {trial} | {layers} | {p['heads']:.0%} | {p['ffn']:.0%} | {p.get('retraining_free') or '-'} | "
                     f"{p['lowrank'] or '-'} | {int8} | {row['score']:.2f} | {row['latency_bs1_ms']:.1f} | "
                     f"{1 / row['latency_ratio_bs1']:.2f}x faster | {1 / row['latency_ratio_bs32']:.2f}x faster |")
    return "\n".join(lines)


def _keeps_layers(row: dict[str, Any]) -> bool:
    """Whether the trial's recipe has no layer stage (its layer count is the original's)."""
    recipe = row.get("recipe")
    return recipe is not None and not any(stage["stage"] == "layers" for stage in recipe["stages"])


def _reference_line(reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    judged = ("agreement with the original's predictions (100 = the original)" if reference["judged_on"] == "agreement"
              else "the held-out rows' labels")
    return f"Scores: {judged} on {reference['held_out_rows']} held-out rows; {reference['why']}.\n\n"


def _finish(study: Any, output: Path, reference: float, max_drop: float | None, max_latency_ms: float | None,
            evaluator: _Evaluator, measure_dev: bool, final_recipe: Any = None) -> SearchResult:
    rows = _trial_rows(study)
    _retime(rows, evaluator)
    retimed = [r for r in rows if r.get("retimed")]
    front = pareto_front(retimed or rows)  # choose among candidates timed side by side
    chosen = None
    if front:
        chosen = (max(front, key=lambda r: r["score"]) if max_drop is None else front[0])
    judged = study.user_attrs.get("reference")
    payload = {"reference_score": reference, "reference": judged,
               "budget": {"max_drop": max_drop, "max_latency_ms": max_latency_ms},
               "front": front, "chosen": chosen, "trials": rows}
    (output / "front.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    (output / "front.md").write_text(_reference_line(judged) + format_front(front) + "\n", encoding="utf-8")
    if chosen is not None and final_recipe is not None:
        chosen = _train_final(chosen, final_recipe(chosen["candidate"]), evaluator, output)
        payload["chosen"] = chosen
        (output / "front.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    if chosen is not None:
        recipe = {**chosen["recipe"], "measure": {"rounds_bs1": 30, "rounds_bs32": 10}}
        (output / "chosen.yaml").write_text(
            f"# Chosen by `hfcompress search` (trial {chosen['trial']}); rebuild it with\n"
            f"#   hfcompress compress --config chosen.yaml --model MODEL --output OUT\n"
            + yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        target = output / "chosen"
        with writing_folder(target) as partial:
            shutil.copytree(chosen["folder"], partial, ignore=shutil.ignore_patterns("stages", "work"),
                            dirs_exist_ok=True)
        if measure_dev:
            _report_on_dev(evaluator, target, chosen, output, judged)
    else:
        logger.warning("no candidate met the budget; see %s/front.json for every trial", output)
    return SearchResult(front, chosen, output, reference, rows)


def _retime(rows: list[dict[str, Any]], evaluator: _Evaluator, limit: int = 8) -> None:
    """Time the front and the next best feasible candidates again, with the original, in one alternating run.

    Each trial was timed when it finished, under whatever else the machine was doing then; a
    candidate timed during a busy minute looks faster or slower than it is. Choosing among
    candidates timed side by side in one run removes that. The trials' own numbers stay in the
    study; the rows get ``latency_*`` from this run (and ``latency_ratio_bs1_at_trial``).
    """
    from .benchmark import paired_latency
    from .pipeline import load_model

    feasible = [r for r in rows if r["feasible"] and "duplicate_of" not in r and Path(r.get("folder", "")).is_dir()]
    front = pareto_front(feasible)
    rest = sorted((r for r in feasible if r not in front), key=lambda r: -r["score"])
    candidates = (front + rest)[:limit]
    if not candidates:
        return
    models = {"original": evaluator.original, **{f"trial {r['trial']}": load_model(r["folder"]) for r in candidates}}
    pairs = [(name, "original") for name in models if name != "original"]
    for batch in (1, 32):
        timing = paired_latency(models, pairs, batch_size=batch, seq_len=128, threads=2, warmup=3,
                                rounds=evaluator.timing_rounds(batch))
        for row in candidates:
            name = f"trial {row['trial']}"
            row[f"latency_ratio_bs{batch}_at_trial"] = row[f"latency_ratio_bs{batch}"]
            row[f"latency_bs{batch}_ms"] = timing["median_ms"][name]
            row[f"latency_ratio_bs{batch}"] = timing["ratios"][f"{name} / original"]["median"]
            row["retimed"] = True


def _train_final(chosen: dict[str, Any], recipe: dict[str, Any], evaluator: _Evaluator,
                 output: Path) -> dict[str, Any]:
    """The chosen candidate trained again at the full budget; its held-out score and latency measured again.
    Kept in OUTPUT/final/ (an interrupted run resumes there)."""
    folder = output / "final" / f"trial-{chosen['trial']:04d}"
    measured = evaluator.measure(recipe, folder / "model")
    logger.info("trial %d trained again at the full budget: held-out %.2f (was %.2f)", chosen["trial"],
                measured["score"], chosen["score"])
    return {**chosen, **measured, "recipe": recipe, "folder": str(folder / "model"),
            "search_score": chosen["score"], "search_recipe": chosen["recipe"]}


def _report_on_dev(evaluator: _Evaluator, folder: Path, chosen: dict[str, Any], output: Path,
                   reference: dict[str, Any] | None = None) -> None:
    """The chosen model against the original on the dev set (reported; the search never saw it), with a warning
    when it keeps less than ``KEEP_WARNING`` of the original's dev score."""
    from .benchmark import write_results
    from .hub import build_model_card
    from .pipeline import measure_against_original, stage_records, warn_if_lost

    results = measure_against_original(evaluator.original, folder, evaluator.data["validation"], evaluator.task,
                                       "search pick", rounds={b: evaluator.timing_rounds(b, report=True)
                                                              for b in (1, 32)})
    results["search"] = {"trial": chosen["trial"], "held_out_score": chosen["score"], "reference": reference}
    if "search_score" in chosen:
        results["search"]["held_out_score_at_search_budget"] = chosen["search_score"]
    write_results(results, output / "results.json", output / "results.md")
    build_model_card(folder, results=results, base_model=evaluator.model_path,
                     stages=stage_records(chosen["recipe"])).save(folder / "README.md")
    warn_if_lost(results)


__all__ = ["SearchResult", "SearchSpace", "candidate_recipe", "format_front", "pareto_front", "search"]
