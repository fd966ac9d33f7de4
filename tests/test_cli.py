import json

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
