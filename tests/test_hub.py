import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from hfcompress import DynamicQuantConfig, compress, prune_heads
from hfcompress.benchmark import add_ratios, benchmark_model
from hfcompress.cli import main
from hfcompress.data import sample_data_dir
from hfcompress.hub import build_model_card, prepare_upload_folder, push_to_hub

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def saved(tmp_path, minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_config(config).eval()
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    prune_heads(base, {0: [0, 1]})
    compress(base, DynamicQuantConfig())
    base.save_pretrained(tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "small")
    rows = [benchmark_model(n, AutoModelForSequenceClassification.from_pretrained(tmp_path / n), batch_sizes=(1,),
                            seq_len=16, repeats=2) for n in ("base", "small")]
    for row, score in zip(rows, (0.9, 0.88)):  # scores given by the test; the card must copy them, not invent
        row["score"], row["metrics"] = score, {"accuracy": score}
    add_ratios(rows, "base")
    (tmp_path / "results.json").write_text(json.dumps({"task": "sst2", "rows": rows, "dev_rows": 872,
                                                       "hardware": {"cpu": "test-cpu"}}))
    return tmp_path, tokenizer


def _metadata(card_text: str) -> dict:
    return yaml.safe_load(card_text.split("---")[1])


def test_card_states_steps_and_measured_cost(saved):
    folder, _ = saved
    results = json.loads((folder / "results.json").read_text())
    card = build_model_card(folder / "small", results=results, base_model="org/base")
    meta = _metadata(str(card))
    assert meta["base_model"] == "org/base" and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert {"hfcompress", "head-pruning", "int8"} <= set(meta["tags"])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.88
    text = card.text
    assert "attention-head pruning" in text and "heads kept per layer" in text and "[2, 4]" in text
    assert "dynamic int8 quantization" in text and "import hfcompress" in text
    bits = json.loads((folder / "small" / "config.json").read_text())["quantization_config"]["steps"][-1]["shape"]["weight_bits"]
    assert ("7-bit on others" if bits == 8 else "8-bit on any x86 CPU") in text  # what the reader's CPU will run
    assert "| dev accuracy | 90.00 | 88.00 |" in text and "test-cpu" in text and "872 dev examples" in text
    ModelCard(str(card))  # parses


def test_card_without_results_invents_nothing(saved):
    folder, _ = saved
    text = build_model_card(folder / "small").text
    assert "No measurements were supplied" in text and "| dev" not in text
    assert "model-index" not in str(build_model_card(folder / "small"))


class RecordingApi:
    """Stands in for HfApi: records what would be uploaded (no network in tests)."""

    def __init__(self):
        self.calls, self.uploaded = [], {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("Repo", (), {"repo_id": repo_id})()

    def upload_folder(self, folder_path, repo_id, **kwargs):
        self.calls.append(("upload_folder", repo_id, kwargs))
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()


def test_push_uploads_exactly_the_saved_folder_plus_card(saved, tmp_path):
    folder, tokenizer = saved
    api = RecordingApi()
    card = build_model_card(folder / "small", results=json.loads((folder / "results.json").read_text()))
    url = push_to_hub(folder / "small", "me/small", card=card, tokenizer=tokenizer, api=api)
    assert url == "https://hub/me/small/commit/1"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    saved_files = {p.name: p.read_bytes() for p in (folder / "small").iterdir()}
    assert set(api.uploaded) == set(saved_files) | {"README.md"}
    assert all(api.uploaded[name] == data for name, data in saved_files.items())
    # what was uploaded loads back as the same model
    download = tmp_path / "download"
    download.mkdir()
    for name, data in api.uploaded.items():
        (download / name).write_bytes(data)
    original = AutoModelForSequenceClassification.from_pretrained(folder / "small")
    again = AutoModelForSequenceClassification.from_pretrained(download)
    ids = torch.randint(1000, 2000, (2, 12))
    assert torch.equal(original(input_ids=ids).logits, again(input_ids=ids).logits)


def test_token_never_written(saved, tmp_path, monkeypatch):
    folder, tokenizer = saved
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    api = RecordingApi()
    push_to_hub(folder / "small", "me/small", tokenizer=tokenizer, api=api)
    assert not any(b"hf_secret_token_value" in data for data in api.uploaded.values())
    assert "hf_secret_token_value" not in repr(api.calls)


def test_cli_card_and_compress(saved, tmp_path, capsys):
    folder, _ = saved
    assert main(["card", str(folder / "small"), "--results", str(folder / "results.json"),
                 "--base_model", "org/base"]) == 0
    assert (folder / "small" / "README.md").read_text().startswith("---")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "sst2", "data_dir": sample_data_dir(), "importance_batches": 2,
                                      "max_seq_length": 32,
                                      "steps": [{"method": "heads", "target": 0.25}, {"method": "lowrank", "rank": 4}]}))
    assert main(["compress", "--config", str(recipe), "--model", str(folder / "base"),
                 "--output", str(tmp_path / "out")]) == 0
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert [s["method"] for s in loaded.config.quantization_config.steps] == ["heads", "lowrank"]
    # Activation-aware low-rank also needs training batches: the recipe's task provides them.
    recipe.write_text(yaml.safe_dump({"task": "sst2", "data_dir": sample_data_dir(), "importance_batches": 2,
                                      "max_seq_length": 32, "steps": [{"method": "lowrank", "rank": 4,
                                                                       "activation_aware": True, "max_batches": 2}]}))
    assert main(["compress", "--config", str(recipe), "--model", str(folder / "base"),
                 "--output", str(tmp_path / "aware")]) == 0
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "aware")
    assert loaded.config.quantization_config.steps[0]["config"]["activation_aware"] is True


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_compress_recipes_build(recipe):
    from hfcompress.compress import post_training_config

    data = yaml.safe_load(recipe.read_text())
    for step in data.get("steps", []):
        settings = dict(step)
        post_training_config(settings.pop("method"), settings)


def test_cli_errors_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["push", str(tmp_path)])  # --repo_id missing
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["compress", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["card", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.mark.skipif(not (os.environ.get("HF_TOKEN") and os.environ.get("HFCOMPRESS_PUSH_REPO")),
                    reason="a real push needs HF_TOKEN and HFCOMPRESS_PUSH_REPO=<user>/<scratch repo> and network")
def test_real_push(saved):  # pragma: no cover - only where a token and the Hub are available
    folder, tokenizer = saved
    repo = os.environ["HFCOMPRESS_PUSH_REPO"]
    push_to_hub(folder / "small", repo, tokenizer=tokenizer, private=True)
    again = AutoModelForSequenceClassification.from_pretrained(repo)
    original = AutoModelForSequenceClassification.from_pretrained(folder / "small")
    ids = torch.randint(1000, 2000, (2, 12))
    assert torch.equal(original(input_ids=ids).logits, again(input_ids=ids).logits)


def test_compression_trainer_writes_its_card(tmp_path):
    from transformers import TrainingArguments

    from hfcompress import CompressionTrainer, TheseusConfig
    from hfcompress.data import compute_metrics_fn

    from .conftest import tiny_inputs, tiny_model

    model = tiny_model("bert", layers=4)
    rows = [{**{k: v[i] for k, v in tiny_inputs().items()}, "labels": torch.tensor(i % 2)} for i in range(3)]
    args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=3, report_to=[], use_cpu=True,
                             save_strategy="no", eval_strategy="steps", eval_steps=2)
    trainer = CompressionTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows,
                                 compute_metrics=compute_metrics_fn("sst2"),
                                 compression=[TheseusConfig(successor_layers=2, steps_for_replacing=1)])
    trainer.train()
    trainer.save_model()
    trainer.create_model_card(model_name="tiny-theseus")
    text = (tmp_path / "README.md").read_text()
    assert "bert-of-theseus" in text and "BERT-of-Theseus progressive module replacement" in text
    assert "not needed to load it" in text  # a Theseus successor is a standard architecture


def test_card_describes_movement_and_sparse_storage(tmp_path):
    from hfcompress import MovementPruningConfig
    from hfcompress.integration import append_step, make_step
    from hfcompress.methods.movement import store_sparse

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".encoder." in name and parameter.dim() == 2:
                parameter[:, : parameter.shape[1] * 9 // 10] = 0
    append_step(model, make_step("movement", MovementPruningConfig(pruning_method="topK"), info={"remaining": 0.1}))
    store_sparse(model).save_pretrained(tmp_path)
    text = str(build_model_card(tmp_path))
    assert "movement pruning" in text and "compact sparse storage" in text
    assert "`sparse-stored linears`=12" in text and "nnz" not in text  # per-layer shapes stay in config.json
    assert {"movement-pruning", "sparse"} <= set(_metadata(text)["tags"])


def test_card_of_a_local_base_model_has_no_hub_link(tmp_path):
    model = AutoModelForSequenceClassification.from_config(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    model.save_pretrained(tmp_path / "small")
    for local in (str(tmp_path / "small"), "./outputs/teacher", "/abs/path/model"):
        text = str(build_model_card(tmp_path / "small", base_model=local))
        assert "huggingface.co/" + local.lstrip("/") not in text and "base_model:" not in text, local
    assert "https://huggingface.co/org/base" in str(build_model_card(tmp_path / "small", base_model="org/base"))


def test_model_push_to_hub_uploads_our_card_for_a_compressed_model(monkeypatch, tmp_path):
    import transformers.utils.hub as transformers_hub

    from tests.conftest import tiny_model

    class Api:  # stands in for the Hub: no network
        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

    uploaded = {}

    def upload(self, working_dir, repo_id, **kwargs):
        uploaded[repo_id] = {p.name: p.read_text(errors="ignore") for p in Path(working_dir).iterdir()
                             if p.suffix in (".md", ".json")}
        return "commit"

    monkeypatch.setattr(transformers_hub, "hf_api", lambda: Api())
    monkeypatch.setattr(transformers_hub.PushToHubMixin, "_upload_modified_files", upload)
    pruned = prune_heads(tiny_model(), {0: [0]})
    plain = tiny_model()
    pruned.push_to_hub("me/pruned", tags=["mine"])
    plain.push_to_hub("me/plain")
    card = uploaded["me/pruned"]["README.md"]
    assert "attention-head pruning" in card and "- mine" in card and "from_pretrained(\"me/pruned\")" in card
    assert "hfcompress" in uploaded["me/pruned"]["config.json"]
    assert "hfcompress" not in uploaded["me/plain"]["README.md"]  # other models keep transformers' card
    assert transformers_hub.create_and_tag_model_card.__module__ == "transformers.utils.hub"  # restored
