"""The ``hfcompress`` command.

    hfcompress compress --config configs/pipeline_sst2.yaml --model my-sst2-model --task sst2 --output out/
    hfcompress search --model my-sst2-model --task sst2 --max-drop 1.0 --budget-trials 24 --output out/search
    hfcompress evaluate out/successor --task sst2 --data_dir data/glue/sst2
    hfcompress benchmark out/teacher out/successor --task sst2 --data_dir data/glue/sst2 --output r.json
    hfcompress export out/successor --onnx --int8 --output out/onnx
    hfcompress export out/successor --onnx --int8 --smoothing 0.8 --rounding gptq --task sst2 --output out/onnx
    hfcompress export out/successor --int8 --weight-bits 8 --no-per-channel --output out/onnx
    hfcompress card out/successor --results r.json --base_model bert-base-uncased
    hfcompress push out/successor --repo_id me/model --results r.json

Errors in what was given are one line on stderr and exit code 2 (``--debug`` shows the traceback). Flags are
shown with dashes and accepted with underscores too (``--max-seq-length`` / ``--max_seq_length``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other error of this command
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="hfcompress", description="Compress, measure and publish BERT-family models.")
    parser.add_argument("--version", action="version", version=f"hfcompress {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the whole traceback instead of one line")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_measure_commands(commands)
    _add_compress_command(commands)
    _add_search_command(commands)
    _add_publish_commands(commands)
    _add_export_command(commands)
    _one_flag_style(parser)
    return parser


def _data_flags(sub: argparse.ArgumentParser) -> None:
    """What evaluate and benchmark score on."""
    sub.add_argument("--task", required=True, help="GLUE/CLUE task name, e.g. sst2, mrpc, tnews")
    sub.add_argument("--data_dir", default=None, help="local task folder; default: the Hub dataset")
    sub.add_argument("--dev_split", type=float, default=None, help="evaluate on the last (1-x) of the dev file")
    sub.add_argument("--max_seq_length", type=int, default=128)
    sub.add_argument("--max_eval_samples", type=int, default=None)


def _add_measure_commands(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="dev-set metrics of a saved model")
    evaluate.add_argument("model", help="folder written by save_pretrained (or a Hub id)")
    _data_flags(evaluate)

    benchmark = commands.add_parser("benchmark", help="side-by-side table: score, params, size, latency, speedup")
    benchmark.add_argument("models", nargs="+", help="model folders; the first is the baseline for ratios")
    _data_flags(benchmark)
    benchmark.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    benchmark.add_argument("--repeats", type=int, default=60,
                           help="timing rounds at batch 1 (a third of them at batch 32); each round times every "
                                "model once, in alternation")
    benchmark.add_argument("--output", default=None, help="write results JSON here (and .md beside it)")
    _device_flag(benchmark, "where torch models are timed (synchronized on CUDA); int8 models and ONNX Runtime / "
                            "OpenVINO folders run on the CPU, and the table names each row's device")


def _device_flag(parser, help_text: str, default: str | None = "auto") -> None:
    from .devices import DEVICES

    parser.add_argument("--device", default=default, choices=DEVICES, help=f"{help_text} (default: auto, CUDA when "
                                                                           "torch sees a GPU)")


def _add_compress_command(commands) -> None:
    compress = commands.add_parser(
        "compress", help="run a staged recipe (layer reduction, pruning with distillation, int8, export)",
        description="Runs the recipe's stages in order (see hfcompress.pipeline), saving each under "
                    "OUTPUT/stages/NN-name; re-running the same command continues where it stopped. The final "
                    "model, its card and results.json (original vs compressed, measured here) go to OUTPUT.")
    compress.add_argument("--config", required=True, help="YAML recipe, e.g. configs/pipeline_sst2.yaml")
    compress.add_argument("--model", default=None, help="the fine-tuned model (folder or Hub id); overrides the recipe")
    compress.add_argument("--output", default=None, help="output folder; overrides the recipe")
    compress.add_argument("--task", default=None, help="GLUE/CLUE task; overrides the recipe's `task`")
    compress.add_argument("--data_dir", default=None, help="local task folder (GLUE TSV / CLUE JSON lines); default: "
                                                         "the recipe's data_dir, else the Hub dataset")
    compress.add_argument("--no-measure", dest="measure", action="store_false",
                          help="skip timing and dev scoring of the original and final models")
    compress.add_argument("--max-drop", dest="max_drop", type=float, default=None,
                          help="fail when the final model loses more than this many points of the task's metric on "
                               "dev (the stages stay: a changed recipe reuses them)")
    _device_flag(compress, "where training stages and float steps run (bf16 training on a GPU that has it); int8 "
                           "steps and exports run on the CPU; overrides the recipe's `device`", default=None)


def _add_search_command(commands) -> None:
    search = commands.add_parser(
        "search", help="find the fastest compressed model within an accuracy budget, measured on this machine",
        description="Explores layer count, head/FFN fractions, low-rank and int8 (see hfcompress.search); scores each "
                    "candidate on a held-out part of train (never the reported dev set) and times it here. Writes "
                    "OUTPUT/front.md, front.json, chosen.yaml (rebuild with `hfcompress compress --config`), chosen/ "
                    "and results.json (original vs pick on dev). Re-running continues the same study.")
    search.add_argument("--model", required=True, help="the fine-tuned model (folder or Hub id)")
    search.add_argument("--task", required=True, help="GLUE/CLUE task, e.g. sst2")
    search.add_argument("--output", required=True, help="folder for trials, the front and the chosen model")
    search.add_argument("--data_dir", default=None, help="local task folder; default: the Hub dataset")
    search.add_argument("--max-drop", dest="max_drop", type=float, default=None,
                        help="points of the task's main metric the model may lose (held-out split)")
    search.add_argument("--max-latency-ms", dest="max_latency_ms", type=float, default=None,
                        help="batch-1 latency (sequence 128) the model must not exceed on this machine")
    search.add_argument("--budget-trials", dest="budget_trials", type=int, default=24,
                        help="candidates to evaluate, counted over every worker of the study")
    search.add_argument("--budget-hours", dest="budget_hours", type=float, default=None, help="stop this worker after")
    search.add_argument("--storage", default=None, help="where the study lives, shared by every worker: an Optuna "
                                                        "database URL (postgresql://..., mysql://...) or journal:FILE "
                                                        "on a shared filesystem (default: sqlite:///OUTPUT/study.db)")
    search.add_argument("--heartbeat-seconds", dest="heartbeat_seconds", type=int, default=60,
                        help="a worker's running trial beats this often; one silent for three beats (worker killed, "
                             "machine lost) is failed and queued again by another worker")
    search.add_argument("--steps", type=int, default=200, help="training steps per training stage of a candidate")
    _device_flag(search, "where candidates train; latency is timed on the CPU, where the int8 runtimes serve")
    search.add_argument("--final-steps", dest="final_steps", type=int, default=None,
                        help="train the chosen candidate again with this many steps per training stage before "
                             "saving it (explore cheaply with --steps, deliver at the full budget)")
    search.add_argument("--latency-rounds", dest="latency_rounds", type=int, default=20,
                        help="timing rounds of each candidate against the original at batch 1 (a quarter of them, "
                             "at least 3, at batch 32); the front is timed again side by side at the end")
    search.add_argument("--holdout", type=float, default=0.1, help="fraction of train kept out to score candidates")
    search.add_argument("--max_train_samples", type=int, default=None, help="train on a subset (shuffled)")
    search.add_argument("--max_seq_length", type=int, default=128)
    search.add_argument("--batch_size", type=int, default=32, help="training batch size")
    search.add_argument("--layers", type=int, nargs="+", default=None, help="layer counts to try (default: about "
                                                                             "1, 2/3, 1/2, 1/3 of the model's)")
    search.add_argument("--retraining-free", dest="retraining_free", type=float, nargs="*", default=None,
                        metavar="KEPT_FLOPS", help="kept head+FFN FLOPs shares to try with retraining-free pruning "
                                                   "(default: 0.7 0.5 0.4; give none to leave it out)")
    search.add_argument("--int8", nargs="+", default=None, choices=["none", "torch", "onnxruntime", "openvino"],
                        help="int8 runtimes to try (default: every one installed, and none)")
    search.add_argument("--eval-file", dest="eval_file", default=None,
                        help="labelled rows the model never saw (a file in the task's layout): candidates are scored "
                             "on them instead of on --holdout of train")
    search.add_argument("--eval-split", dest="eval_split", default=None,
                        help="a split of the task's data to score candidates on instead (e.g. validation_mismatched)")
    search.add_argument("--reference", choices=["auto", "labels", "agreement"], default="auto",
                        help="judge --max-drop on the held-out labels, or on agreement with the original's "
                             "predictions (auto: agreement when the original has likely trained on those rows)")
    search.add_argument("--seed", type=int, default=42)
    search.add_argument("--explore-only", dest="explore_only", action="store_true",
                        help="only add trials to the study (extra workers of a shared --storage): no re-timing, "
                             "choice or dev report; one worker without this flag, or a later run, makes the choice")


def _add_publish_commands(commands) -> None:
    card = commands.add_parser("card", help="write README.md (model card) for a saved compressed model")
    card.add_argument("model", help="folder written by save_pretrained")
    _card_flags(card)
    card.add_argument("--output", default=None, help="where to write the card (default: MODEL/README.md)")

    push = commands.add_parser("push", help="upload a saved model + tokenizer + model card to the Hub",
                               description="Uses the huggingface_hub login or HF_TOKEN; the token is never printed.")
    push.add_argument("model", help="folder written by save_pretrained (with its tokenizer files)")
    push.add_argument("--repo_id", required=True, help="e.g. me/minilm-theseus-sst2")
    push.add_argument("--private", action="store_true")
    _card_flags(push)


def _add_export_command(commands) -> None:
    export = commands.add_parser(
        "export", help="write the model for a runtime (ONNX Runtime or OpenVINO), optionally int8",
        description="Every option of the runtime's export config (OnnxExportConfig, OpenVINOExportConfig) is a flag "
                    "here and a key of a recipe's export stage; an option of the other runtime is refused.")
    export.add_argument("model", help="folder written by save_pretrained (or a Hub id)")
    export.add_argument("--output", required=True, help="folder to write the model, config and tokenizer to")
    runtime = export.add_mutually_exclusive_group()
    runtime.add_argument("--onnx", dest="runtime", action="store_const", const="onnxruntime",
                         help="ONNX Runtime (the default)")
    runtime.add_argument("--openvino", dest="runtime", action="store_const", const="openvino",
                         help="OpenVINO IR; --int8 quantizes with NNCF on --task's training rows")
    export.set_defaults(runtime="onnxruntime")
    export.add_argument("--int8", action="store_true", help="quantize to int8 (ONNX Runtime: dynamic activation "
                                                             "scales; OpenVINO: NNCF, calibrated)")
    export.add_argument("--static", action="store_true",
                        help="ONNX Runtime, with --int8: activation scales calibrated once on --task's training rows "
                             "(QDQ) instead of per call")
    from .runtimes import runtimes

    added: set[str] = {"int8", "max_batches"}
    for spec in runtimes():
        added |= _config_flags(export, spec.config_cls, skip=added)
    export.add_argument("--task", default=None, help="calibrate on this task's training rows (GLUE/CLUE name), for "
                                                     "OpenVINO --int8 and ONNX --static, --rounding gptq, --smoothing")
    export.add_argument("--data_dir", default=None, help="local task folder for calibration; default: the Hub dataset")
    export.add_argument("--dev_split", type=float, default=None, help="dev-only tasks: calibrate on the first x of dev")
    export.add_argument("--max_seq_length", type=int, default=128)
    export.add_argument("--calibration_batches", type=int, default=32, help="batches of 32 training rows")


def _config_flags(parser: argparse.ArgumentParser, config_cls: type, skip: set[str] = frozenset()) -> set[str]:
    """One flag per field of a config dataclass, with the field's help; flags not given stay out of the namespace
    (``argparse.SUPPRESS``), so the config's own defaults apply. A field typed ``bool`` gets ``--x/--no-x``.
    Returns the fields that got a flag."""
    import dataclasses

    added = set()
    for item in dataclasses.fields(config_cls):
        if not item.init or item.name in skip:
            continue
        added.add(item.name)
        flag, annotation = f"--{item.name.replace('_', '-')}", str(item.type)
        help_text = item.metadata.get("help")
        if isinstance(item.default, bool) or annotation.startswith("bool"):
            parser.add_argument(flag, dest=item.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
            continue
        kind = int if annotation.startswith("int") else float if annotation.startswith("float") else str
        parser.add_argument(flag, dest=item.name, type=kind, default=argparse.SUPPRESS, help=help_text,
                            metavar=item.name.upper())
    return added


def _config_settings(args: argparse.Namespace, config_cls: type) -> dict:
    """The fields of ``config_cls`` that were given as flags."""
    import dataclasses

    return {item.name: getattr(args, item.name) for item in dataclasses.fields(config_cls) if hasattr(args, item.name)}


def _one_flag_style(parser: argparse.ArgumentParser) -> None:
    """Flags are shown with dashes (``--max-seq-length``) and accepted with underscores too (``--max_seq_length``,
    TrainingArguments' spelling), in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_flag_style(sub)
            continue
        for option in list(action.option_strings):
            if not option.startswith("--"):
                continue
            dashed, underscored = "--" + option[2:].replace("_", "-"), "--" + option[2:].replace("-", "_")
            for alias in (dashed, underscored):
                parser._option_string_actions.setdefault(alias, action)
        action.option_strings = list(dict.fromkeys("--" + o[2:].replace("_", "-") if o.startswith("--") else o
                                                   for o in action.option_strings))


def _card_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--results", default=None, help="results JSON from a script or `hfcompress benchmark`")
    sub.add_argument("--compressed_row", default=None, help="row of the compressed model (default: last)")
    sub.add_argument("--baseline_row", default=None, help="row of the uncompressed model (default: first)")
    sub.add_argument("--base_model", default=None, help="Hub id of the model it was compressed from")


def _card(args):
    import json

    from .hub import build_model_card

    results = None
    if args.results:
        results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    return build_model_card(args.model, results=results, compressed_row=args.compressed_row,
                            baseline_row=args.baseline_row, base_model=args.base_model)


def _compress(args) -> Path:
    from .benchmark import format_table
    from .pipeline import run_pipeline

    result = run_pipeline(args.config, model=args.model, output=args.output, task=args.task, data_dir=args.data_dir,
                          measure=args.measure, max_drop=args.max_drop, device=args.device)
    if result.results:
        print(format_table(result.results["rows"], metric_name=result.results["metric"]))
    from .runtimes import get_runtime

    loader = (f"{get_runtime(result.runtime).runner.__name__}.from_pretrained" if result.runtime
              else "AutoModelForSequenceClassification.from_pretrained")
    print(f"wrote the compressed model, its card (README.md) and results to {result.output}/; load it with "
          f"{loader}({str(result.output)!r}) after `import hfcompress`")
    return result.output


def _export(args) -> Path:
    from .runtimes import get_runtime

    from .runtimes import runtimes

    runtime = get_runtime(args.runtime)
    if args.static and not args.int8:
        raise ValueError("--static is a kind of int8 export: add --int8")
    if args.static and runtime.name != "onnxruntime":
        raise ValueError("--static is an ONNX Runtime option (OpenVINO's int8 is always calibrated): drop it")
    own = _config_settings(args, runtime.config_cls)
    foreign = sorted({name for spec in runtimes() if spec is not runtime
                      for name in _config_settings(args, spec.config_cls)} - set(own))
    if foreign:
        raise ValueError(f"--{foreign[0].replace('_', '-')} is not an option of {runtime.name} exports; "
                         f"`hfcompress export --help` lists each runtime's")
    settings = {**own, "int8": "static" if args.static else args.int8}
    config = runtime.config_cls.from_dict(settings)
    model, tokenizer = _load(args.model)
    loader = None
    if config.requires_dataloader:
        if not args.task:
            raise ValueError("--static, --rounding gptq and --smoothing calibrate on training rows: add --task (and "
                             "--data_dir for local files)")
        loader = _training_batches(tokenizer, args.task, args.data_dir, args.dev_split, args.max_seq_length,
                                   args.calibration_batches)
        if "max_batches" in config.to_dict():
            config = runtime.config_cls.from_dict({**config.to_dict(), "max_batches": args.calibration_batches})
    folder = runtime.export(model, args.output, config, tokenizer=tokenizer, dataloader=loader)
    print(f"wrote {folder / runtime.marker}")
    return folder


def _search_space(args) -> "SearchSpace":
    from .search import SearchSpace

    space = SearchSpace(layers=args.layers)
    if args.int8 is not None:
        space.int8 = list(dict.fromkeys(args.int8))
    if args.retraining_free is not None:
        space.retraining_free = [None, *args.retraining_free]
    return space


def _search(args) -> None:
    from .search import search

    result = search(args.model, task=args.task, output=args.output, data_dir=args.data_dir, max_drop=args.max_drop,
                    max_latency_ms=args.max_latency_ms, n_trials=args.budget_trials, budget_hours=args.budget_hours,
                    storage=args.storage, steps=args.steps, final_steps=args.final_steps, holdout=args.holdout,
                    max_train_samples=args.max_train_samples, max_seq_length=args.max_seq_length,
                    training={"per_device_train_batch_size": args.batch_size}, space=_search_space(args), seed=args.seed,
                    eval_file=args.eval_file, eval_split=args.eval_split, reference=args.reference,
                    heartbeat_seconds=args.heartbeat_seconds, device=args.device, latency_rounds=args.latency_rounds,
                    explore_only=args.explore_only)
    if args.explore_only:
        print(f"explored: {len(result.trials)} trials in the study so far; run without --explore-only to choose")
        return
    if result.chosen is None:
        raise ValueError(f"no candidate met the budget in {len(result.trials)} trials; see {args.output}/front.json, "
                         "relax --max-drop/--max-latency-ms or raise --budget-trials")
    print(f"chose trial {result.chosen['trial']}: held-out score {result.chosen['score']:.2f} (original "
          f"{result.reference_score:.2f}), {1 / result.chosen['latency_ratio_bs1']:.2f}x faster at batch 1; model in "
          f"{args.output}/chosen/, recipe {args.output}/chosen.yaml, dev-set comparison {args.output}/results.md")


def _training_batches(tokenizer, task: str, data_dir: str | None, dev_split: float | None, max_length: int,
                      batches: int):
    """``batches`` shuffled batches of 32 training rows: importance scores and int8 calibration."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    from .data import load_task, tokenize_task

    data = load_task(task, data_dir, dev_split=dev_split)["train"]
    data = data.shuffle(seed=0).select(range(min(data.num_rows, 32 * batches)))
    data = tokenize_task(data, tokenizer, task, max_length=max_length).rename_column("label", "labels")
    return DataLoader(data, batch_size=32, collate_fn=DataCollatorWithPadding(tokenizer))


def _load(path: str):
    """A saved model (PyTorch, or an ONNX / OpenVINO export through its runner) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .runtimes import runtime_for_folder

    runtime = runtime_for_folder(path) if Path(path).is_dir() else None
    if runtime is not None:
        return runtime.runner.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _dev(args, tokenizer):
    from .data import load_task, tokenize_task

    dataset = load_task(args.task, args.data_dir, dev_split=args.dev_split)["validation"]
    if args.max_eval_samples:
        dataset = dataset.select(range(min(args.max_eval_samples, dataset.num_rows)))
    return tokenize_task(dataset, tokenizer, args.task, max_length=args.max_seq_length)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a line is logged (a caller may have replaced it since)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _quiet() -> None:
    """The command prints its own lines and the Trainer's bar; libraries' bars, banners and warnings go."""
    from .scripting import quiet_libraries

    quiet_libraries()
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice goes to the root logger
    # The library logs its progress (stage N/M, the search's front after each trial); the command shows it.
    ours = logging.getLogger("hfcompress")
    if not any(isinstance(h, _StdoutHandler) for h in ours.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def _evaluate(args) -> None:
    from .benchmark import evaluate_model

    model, tokenizer = _load(args.model)
    for name, value in evaluate_model(model, _dev(args, tokenizer), args.task).items():
        print(f"{name}\t{value:.4f}")


def _benchmark(args) -> None:
    from .benchmark import (add_ratios, benchmark_rows, format_table, speedup_legend, unrankable, weights_size_bytes,
                            write_results)
    from .data import get_task

    from .devices import holds_int8, resolve_device

    device = resolve_device(args.device)
    entries, dev = [], None
    for path in args.models:
        model, tokenizer = _load(path)
        if hasattr(model, "parameters") and not holds_int8(model):  # a torch module (not a runtime runner)
            model = model.to(device)
        dev = dev if dev is not None else _dev(args, tokenizer)
        name = Path(path).name or path
        if any(e["name"] == name for e in entries):
            name = path
        entry = {"name": name, "model": model}
        if Path(path).is_dir():  # the weights as saved (ONNX / OpenVINO runners cannot save themselves)
            entry["size_bytes"] = weights_size_bytes(path)
        entries.append(entry)
    rows = benchmark_rows(entries, eval_dataset=dev, task=args.task, threads=args.threads,
                          rounds={1: args.repeats, 32: max(3, args.repeats // 3)})
    add_ratios(rows, rows[0]["name"])
    metric = get_task(args.task).main_metric
    print(format_table(rows, metric))
    print(speedup_legend(rows[0]["name"]))
    for line in unrankable(rows):
        print(f"warning: {line}", file=sys.stderr)
    if args.output:
        write_results({"task": args.task, "metric": metric, "rows": rows}, args.output,
                      Path(args.output).with_suffix(".md"))


def _write_card(args) -> None:
    target = Path(args.output) if args.output else Path(args.model) / "README.md"
    _card(args).save(target)
    print(f"wrote {target}")


def _push(args) -> None:
    from transformers import AutoTokenizer

    from .hub import push_to_hub

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    print(push_to_hub(args.model, args.repo_id, card=_card(args), tokenizer=tokenizer, private=args.private))


COMMANDS = {"evaluate": _evaluate, "benchmark": _benchmark, "compress": _compress, "search": _search,
            "card": _write_card, "push": _push, "export": _export}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet()
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError, TypeError) as error:  # bad input: one line; anything else is a bug, shown whole
        if args.debug:
            raise
        print(f"hfcompress {args.command}: {error}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
