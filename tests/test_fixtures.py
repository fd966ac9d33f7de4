"""Checkpoints written by earlier hfcompress releases keep loading with the same logits."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import hfcompress

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY = sorted(p for p in (FIXTURES / "legacy_v1").iterdir() if p.is_dir())


def test_fixtures_present():
    assert {p.name for p in LEGACY} >= {"heads_ffn", "sharing", "lowrank", "int8", "movement_sparse", "movement_heads"}


@pytest.mark.parametrize("folder", LEGACY, ids=[p.name for p in LEGACY])
def test_legacy_checkpoint_loads_with_same_logits(folder):
    expected = json.loads((folder / "expected.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    inputs = {"input_ids": torch.tensor(expected["input_ids"]),
              "attention_mask": torch.tensor(expected["attention_mask"])}
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in model.parameters()) == expected["params"]
    record = hfcompress.get_record(model)
    assert record is not None and record.steps
