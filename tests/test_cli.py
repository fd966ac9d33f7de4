import json

import pytest

from transformers import AutoTokenizer

from hfcompress import prune_heads
from hfcompress.cli import main
from hfcompress.data import sample_data_dir

from .conftest import tiny_model


def _save_pair(tmp_path, minilm_path):
    from transformers import BertConfig, AutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    base = AutoModelForSequenceClassification.from_config(config)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    prune_heads(base, {0: [0, 1]})
    base.save_pretrained(tmp_path / "pruned")
    tokenizer.save_pretrained(tmp_path / "pruned")


def test_benchmark_and_evaluate(tmp_path, minilm_path, capsys):
    _save_pair(tmp_path, minilm_path)
    common = ["--task", "sst2", "--data_dir", sample_data_dir(), "--max_eval_samples", "16"]
    assert main(["evaluate", str(tmp_path / "pruned"), *common]) == 0
    assert capsys.readouterr().out.startswith("accuracy\t")
    out = tmp_path / "r.json"
    assert main(["benchmark", str(tmp_path / "base"), str(tmp_path / "pruned"), *common, "--repeats", "2",
                 "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| base |" in table and "| pruned |" in table and "95% interval" in table
    rows = json.loads(out.read_text())["rows"]
    assert rows[1]["params"] < rows[0]["params"]
    # The second model was timed against the first round by round: a paired speedup with its interval.
    paired = rows[1]["paired"]["bs1"]
    assert paired["baseline"] == "base" and paired["ci95"][0] <= paired["speedup"] <= paired["ci95"][1]
    assert rows[1]["speedup_bs1"] == paired["speedup"] and "accuracy" in out.with_suffix(".md").read_text()


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--task", "sst2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hfcompress evaluate:") and err.count("\n") == 1
    tiny_model().save_pretrained(tmp_path / "m")
    assert main(["evaluate", str(tmp_path / "m"), "--task", "nope"]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err


def test_every_file_a_help_text_names_exists(capsys):
    import re
    from pathlib import Path

    import pytest

    from hfcompress import cli

    root = Path(__file__).resolve().parent.parent
    texts = [cli.__doc__ or ""]
    for command in ("compress", "search", "evaluate", "benchmark", "export", "card", "push"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts.append(capsys.readouterr().out)
    named = set(re.findall(r"configs/[\w.-]+\.ya?ml", "\n".join(texts)))
    assert named, "the help texts should name at least one recipe"
    assert [p for p in sorted(named) if not (root / p).is_file()] == []


# --- one export config, read by the function, the CLI and a recipe --------------------------------------------
def test_every_export_option_is_a_flag_and_a_recipe_key_and_all_three_export_alike(tmp_path, minilm_path, capsys):
    import dataclasses

    from hfcompress import OnnxExportConfig, export_onnx
    from hfcompress.pipeline import run_pipeline

    from .conftest import save_tiny_bert

    base = save_tiny_bert(tmp_path / "base", minilm_path, layers=2)
    options = {"weight_bits": 8, "per_channel": False, "optimize": False, "opset": 17}
    from transformers import AutoModelForSequenceClassification

    export_onnx(AutoModelForSequenceClassification.from_pretrained(base), tmp_path / "function",
                OnnxExportConfig(int8=True, **options))
    assert main(["export", str(base), "--int8", "--weight_bits", "8", "--no-per-channel", "--no-optimize",
                 "--opset", "17", "--output", str(tmp_path / "cli")]) == 0
    run_pipeline({"stages": [{"stage": "export", "format": "onnx_int8", **options}]}, model=str(base),
                 output=tmp_path / "recipe", measure=False)
    recorded = [json.loads((tmp_path / name / "config.json").read_text())["hfcompress_onnx"]
                for name in ("function", "cli", "recipe")]
    assert recorded[0] == recorded[1] == recorded[2]
    assert (recorded[0]["weight_bits"], recorded[0]["per_channel"], recorded[0]["optimized"]) == (8, False, False)
    # Every field is reachable from the command line.
    from hfcompress.cli import _parser

    export_help = _parser()._subparsers._group_actions[0].choices["export"].format_help()
    for item in dataclasses.fields(OnnxExportConfig):
        if item.name not in ("int8", "max_batches"):  # --int8/--static; --calibration-batches
            assert f"--{item.name.replace('_', '-')}" in export_help, item.name
    # A misspelt recipe key gets the did-you-mean line before any work.
    with pytest.raises(ValueError, match=r"has no field\(s\) \['weight_bit'\] \(did you mean 'weight_bits'\?\)"):
        run_pipeline({"stages": [{"stage": "export", "format": "onnx_int8", "weight_bit": 8}]}, model=str(base),
                     output=tmp_path / "never", measure=False)
    assert not (tmp_path / "never" / "stages").exists()


def test_flags_show_one_style_and_accept_both(capsys):
    from hfcompress.cli import _parser

    parser = _parser()
    evaluate = parser.parse_args(["evaluate", "m", "--task", "sst2", "--max_seq_length", "64", "--data-dir", "d"])
    assert (evaluate.max_seq_length, evaluate.data_dir) == (64, "d")
    search = parser.parse_args(["search", "--model", "m", "--task", "sst2", "--output", "o", "--max_drop", "1"])
    assert search.max_drop == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--help"])
    shown = capsys.readouterr().out
    assert "--max-seq-length" in shown and "--max_seq_length" not in shown


def test_debug_shows_the_traceback_instead_of_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--task", "sst2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(OSError):
        main(["--debug", "evaluate", str(tmp_path / "missing"), "--task", "sst2"])
