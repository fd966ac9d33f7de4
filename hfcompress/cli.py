"""The ``hfcompress`` command.

    hfcompress benchmark out/teacher out/successor --task sst2 --data_dir data/glue/sst2
    hfcompress evaluate out/successor --task sst2 --data_dir data/glue/sst2

Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfcompress", description="Compress, measure and publish BERT-family models.")
    parser.add_argument("--version", action="version", version=f"hfcompress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def data_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--task", required=True, help="GLUE/CLUE task name, e.g. sst2, mrpc, tnews")
        sub.add_argument("--data_dir", default=None, help="local task folder; default: the Hub dataset")
        sub.add_argument("--dev_split", type=float, default=None, help="evaluate on the last (1-x) of the dev file")
        sub.add_argument("--max_seq_length", type=int, default=128)
        sub.add_argument("--max_eval_samples", type=int, default=None)

    evaluate = commands.add_parser("evaluate", help="dev-set metrics of a saved model")
    evaluate.add_argument("model", help="folder written by save_pretrained (or a Hub id)")
    data_flags(evaluate)

    benchmark = commands.add_parser("benchmark", help="side-by-side table: score, params, size, latency, speedup")
    benchmark.add_argument("models", nargs="+", help="model folders; the first is the baseline for ratios")
    data_flags(benchmark)
    benchmark.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    benchmark.add_argument("--repeats", type=int, default=10, help="timed forward passes per measurement")
    benchmark.add_argument("--output", default=None, help="write results JSON here (and .md beside it)")

    export = commands.add_parser("export", help="write an ONNX model (optionally int8) for ONNX Runtime")
    export.add_argument("model", help="folder written by save_pretrained (or a Hub id)")
    export.add_argument("--output", required=True, help="folder to write model.onnx, config and tokenizer to")
    export.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the only format)")
    export.add_argument("--int8", action="store_true", help="quantize weights to int8 (dynamic activations)")
    export.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip ONNX Runtime's transformer fusions")
    return parser


def _load(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _dev(args, tokenizer):
    from .data import load_task, tokenize_task

    dataset = load_task(args.task, args.data_dir, dev_split=args.dev_split)["validation"]
    if args.max_eval_samples:
        dataset = dataset.select(range(min(args.max_eval_samples, dataset.num_rows)))
    return tokenize_task(dataset, tokenizer, args.task, max_length=args.max_seq_length)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .benchmark import add_ratios, benchmark_model, evaluate_model, format_table, write_results

        if args.command == "evaluate":
            model, tokenizer = _load(args.model)
            for name, value in evaluate_model(model, _dev(args, tokenizer), args.task).items():
                print(f"{name}\t{value:.4f}")
        elif args.command == "benchmark":
            rows, dev = [], None
            for path in args.models:
                model, tokenizer = _load(path)
                dev = dev if dev is not None else _dev(args, tokenizer)
                rows.append(benchmark_model(Path(path).name or path, model, eval_dataset=dev, task=args.task,
                                            threads=args.threads, repeats=args.repeats))
            add_ratios(rows, rows[0]["name"])
            print(format_table(rows))
            if args.output:
                write_results({"task": args.task, "rows": rows}, args.output, Path(args.output).with_suffix(".md"))
        elif args.command == "export":
            from .methods.quantization import export_onnx

            model, tokenizer = _load(args.model)
            folder = export_onnx(model, args.output, int8=args.int8, optimize=args.optimize, tokenizer=tokenizer)
            print(f"wrote {folder / 'model.onnx'}")
    except (ValueError, OSError, TypeError) as error:
        print(f"hfcompress {args.command}: {error}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
