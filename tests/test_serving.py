"""One loaded model answering many threads at once, as a server does: every runner gives each request the answer
it gives alone (8 client threads), and the throughput measurement reports every client count."""

import importlib.util

import pytest

from hfcompress import DynamicQuantConfig, OnnxSequenceClassifier, compress, export_onnx
from hfcompress.timing import concurrent_throughput

from .conftest import tiny_model


def _runners(tmp_path):
    yield "torch fp32", tiny_model("bert").eval()
    yield "torch int8", compress(tiny_model("bert"), DynamicQuantConfig()).eval()
    yield "onnxruntime int8", OnnxSequenceClassifier.from_pretrained(export_onnx(tiny_model("bert"), tmp_path / "onnx",
                                                                                 int8=True))
    if importlib.util.find_spec("openvino") is not None:
        from hfcompress import OpenVINOSequenceClassifier, export_openvino

        yield "openvino", OpenVINOSequenceClassifier.from_pretrained(export_openvino(tiny_model("bert"), tmp_path / "ov"))


def test_every_runner_answers_eight_threads_as_it_answers_one(tmp_path):
    seen = []
    for name, model in _runners(tmp_path):
        measured = concurrent_throughput(model, clients=(1, 2, 8), requests=48, seq_len=16, threads=1)
        assert measured["mismatches"] == {1: 0, 2: 0, 8: 0}, name
        assert all(rate > 0 for rate in measured["per_second"].values()), name
        seen.append(name)
    assert seen[:3] == ["torch fp32", "torch int8", "onnxruntime int8"]


def test_a_runner_that_mixes_up_answers_is_caught():
    import threading

    import torch

    class Racy(torch.nn.Module):
        """Keeps the last input in shared state between computing and answering: threads overwrite each other."""

        config = type("Config", (), {"vocab_size": 5000})  # varied input ids per request

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1))
            self.last = None
            self.pause = threading.Event()

        def forward(self, input_ids, attention_mask):
            self.last = input_ids.float().sum(-1, keepdim=True)
            self.pause.wait(0.002)
            return type("Out", (), {"logits": self.last * self.weight})()

    measured = concurrent_throughput(Racy(), clients=(8,), requests=32, seq_len=4, threads=1)
    assert measured["mismatches"][8] > 0
