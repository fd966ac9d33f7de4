"""Security: weights never go through pickle, and a token never reaches a log, a card or a saved file."""

import logging
import re
from pathlib import Path

from hfcompress.hub import build_model_card, push_to_hub

from .conftest import ROOT, tiny_model

SOURCES = [p for folder in ("hfcompress", "scripts", "benchmarks") for p in (ROOT / folder).rglob("*.py")
           if "cache" not in p.parts]


def test_no_torch_load_without_weights_only_and_no_pickle():
    offenders = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start():text.find(")", match.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(ROOT)}: {call}")
        if re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.MULTILINE) or \
                "pickle.load" in text:
            offenders.append(f"{path.relative_to(ROOT)}: unpickles")
    assert SOURCES and not offenders, offenders


class _Api:
    def __init__(self):
        self.files, self.calls = {}, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("Repo", (), {"repo_id": repo_id})()

    def upload_folder(self, folder_path, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        self.files = {p.name: p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        return "https://example.invalid/commit"


def test_a_push_writes_and_logs_no_token(tmp_path, monkeypatch, caplog, capsys):
    secret = "hf_SeCrEtT0kenValue123"
    monkeypatch.setenv("HF_TOKEN", secret)
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    api = _Api()
    with caplog.at_level(logging.DEBUG):
        push_to_hub(tmp_path / "model", "me/model", card=build_model_card(tmp_path / "model"), token=secret, api=api)
    captured = capsys.readouterr()
    assert api.files and not [name for name, data in api.files.items() if secret.encode() in data]
    assert secret not in repr(api.calls)
    assert secret not in caplog.text and secret not in captured.out and secret not in captured.err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
