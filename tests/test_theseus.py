import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from hfcompress import CompressionTrainer, DistillationConfig, TheseusCallback, TheseusConfig, get_adapter, get_record
from hfcompress.distillation import distillation_loss, hidden_state_loss
from hfcompress.methods.theseus import TheseusLayers, attach_successor, replacing_rate
from hfcompress.methods.theseus.model import successor_sources

from .conftest import tiny_inputs, tiny_model


def _rows(n=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(5, 120, (10,), generator=generator),
             "attention_mask": torch.ones(10, dtype=torch.long), "labels": torch.tensor(i % 3)} for i in range(n)]


def _args(tmp_path, **kwargs):
    defaults = dict(max_steps=8, per_device_train_batch_size=8, report_to=[], use_cpu=True, save_strategy="no",
                    learning_rate=1e-3, seed=0)
    return TrainingArguments(str(tmp_path / "run"), **{**defaults, **kwargs})


def test_constant_schedule():
    config = TheseusConfig(successor_layers=3, replacing_rate=0.3, steps_for_replacing=100)
    assert [replacing_rate(config, s) for s in (0, 50, 99, 100, 500)] == [0.3, 0.3, 0.3, 1.0, 1.0]


def test_linear_schedule():
    config = TheseusConfig(scheduler="linear", replacing_rate=0.3, scheduler_linear_k=0.001)
    assert replacing_rate(config, 0) == pytest.approx(0.3)
    assert replacing_rate(config, 400) == pytest.approx(0.7)
    assert replacing_rate(config, 700) == 1.0 and replacing_rate(config, 5000) == 1.0
    assert TheseusConfig(scheduler="none").scheduler == "constant"  # the reference code's name


@pytest.mark.parametrize("bad", [
    dict(replacing_rate=0.0), dict(replacing_rate=1.5), dict(replacing_rate=-0.1), dict(scheduler="cosine"),
    dict(successor_layers=0), dict(successor_init="middle"), dict(scheduler="linear", scheduler_linear_k=0),
    dict(steps_for_replacing=-1),
])
def test_bad_configs_rejected(bad):
    with pytest.raises(ValueError):
        TheseusConfig(**bad)


def test_uneven_blocks_rejected():
    with pytest.raises(ValueError, match=r"equal blocks.*\[1, 2, 4\]"):
        attach_successor(tiny_model(layers=4), TheseusConfig(successor_layers=3))


def test_successor_init_sources():
    assert successor_sources(6, 3, "first") == [0, 1, 2]
    assert successor_sources(6, 3, "block_last") == [1, 3, 5]
    model = tiny_model(layers=6)
    originals = [layer.output.dense.weight.clone() for layer in model.bert.encoder.layer]
    stack = attach_successor(model, TheseusConfig(successor_layers=3, successor_init="block_last"))
    for successor, source in zip(stack.successor, [1, 3, 5]):
        assert torch.equal(successor.output.dense.weight, originals[source])
        assert successor.output.dense.weight.data_ptr() != originals[source].data_ptr()


def test_eval_uses_successor_only():
    model = tiny_model(layers=6)
    stack = attach_successor(model, TheseusConfig(successor_layers=3))
    model.eval()
    with torch.no_grad():
        out = model(**tiny_inputs()).logits
        for layer in stack.predecessor:  # wreck the predecessor: eval must not notice
            layer.output.dense.weight.normal_()
        assert torch.equal(model(**tiny_inputs()).logits, out)


def test_draws_are_deterministic_and_follow_rate():
    model = tiny_model(layers=6)
    stack = attach_successor(model, TheseusConfig(successor_layers=3), seed=7)
    stack.set_step(5, 0.5)
    first = [stack.draw() for _ in range(3)]
    stack.set_step(5, 0.5)
    assert [stack.draw() for _ in range(3)] == first  # same step -> same draws (every process, resume)
    hits = 0
    for step in range(2000):
        stack.set_step(step, 0.3)
        hits += sum(stack.draw())
    assert abs(hits / 6000 - 0.3) < 0.03


def _train_without_dropout(model):
    """Training mode (replacement draws) with deterministic outputs."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def test_hidden_state_distillation_matches_each_output_to_its_depth():
    # Replacement training changes the depth per forward; each recorded layer output must be
    # compared with the teacher's output at the same depth, not spread evenly over the teacher.
    teacher = tiny_model(layers=6)
    model = copy.deepcopy(teacher)
    stack = attach_successor(model, TheseusConfig(successor_layers=3), seed=3)
    teacher.eval()
    _train_without_dropout(model)
    mixed_paths = 0
    for step in range(12):
        stack.set_step(step, 0.5)
        with torch.no_grad():
            student = model(**tiny_inputs(), output_hidden_states=True).hidden_states
            target = teacher(**tiny_inputs(), output_hidden_states=True).hidden_states
        depths = stack.output_depths
        assert len(depths) == len(student) - 1 and depths[-1] == 1.0
        mixed_paths += 3 < len(depths) < 6
        # Predecessor layers before the first successor layer run the teacher's own weights on the
        # teacher's own input: their outputs equal the teacher's at the same depth.
        for i, depth in enumerate(depths, start=1):
            if i == round(depth * 6):  # an all-predecessor prefix
                torch.testing.assert_close(student[i], target[i], rtol=0, atol=0)
        expected = torch.stack([torch.nn.functional.mse_loss(student[i], target[round(d * 6)])
                                for i, d in enumerate(depths, start=1)]).mean()
        torch.testing.assert_close(hidden_state_loss(student, target, depths), expected)
    assert mixed_paths > 0
    model.eval()
    model(**tiny_inputs())
    assert stack.output_depths == [1 / 3, 2 / 3, 1.0]


def test_frozen_predecessor_gets_no_gradient_and_successor_trains(tmp_path):
    model = tiny_model(layers=6)
    callback = TheseusCallback(TheseusConfig(successor_layers=3, replacing_rate=0.5, steps_for_replacing=100))
    seen = {"steps": 0}

    class Probe(TrainerCallback):  # checks gradients before each optimizer step
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            stack = get_adapter(model).layers(model)
            assert all(p.grad is None for p in stack.predecessor.parameters())
            assert model.classifier.weight.grad is None and model.bert.embeddings.word_embeddings.weight.grad is None
            seen["steps"] += 1

    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_rows(), callbacks=[callback, Probe()])
    stack = get_adapter(model).layers(model)
    predecessor = [p.clone() for p in stack.predecessor.parameters()]
    successor = [p.clone() for p in stack.successor.parameters()]
    classifier = model.classifier.weight.clone()
    callback.exported = True  # keep the stack to inspect it
    trainer.train()
    assert seen["steps"] == 8
    assert all(torch.equal(a, b) for a, b in zip(predecessor, stack.predecessor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(successor, stack.successor.parameters()))
    assert torch.equal(classifier, model.classifier.weight)


def test_all_predecessor_draw_trains_nothing(tmp_path):
    # replacing_rate tiny: almost every draw keeps all predecessor blocks. Training must not
    # crash ("element 0 of tensors does not require grad") and must not move the successor.
    model = tiny_model(layers=6)
    callback = TheseusCallback(TheseusConfig(successor_layers=3, replacing_rate=1e-9, steps_for_replacing=100))
    trainer = Trainer(model=model, args=_args(tmp_path, max_steps=3, weight_decay=0.1), train_dataset=_rows(),
                      callbacks=[callback])
    successor = [p.clone() for p in model.bert.encoder.layer.successor.parameters()]
    callback.exported = True
    trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(successor, model.bert.encoder.layer.successor.parameters()))


def test_stage_two_trains_everything_and_export_matches(tmp_path):
    model = tiny_model(layers=6)
    callback = TheseusCallback(TheseusConfig(successor_layers=3, replacing_rate=0.5, steps_for_replacing=3))
    classifier = model.classifier.weight.clone()
    trainer = Trainer(model=model, args=_args(tmp_path, max_steps=6), train_dataset=_rows(), callbacks=[callback])
    stack = get_adapter(model).layers(model)
    model.eval()
    trainer.train()
    assert not torch.equal(classifier, model.classifier.weight)  # stage 2 trained the classifier
    assert isinstance(stack, TheseusLayers) and not isinstance(model.bert.encoder.layer, TheseusLayers)
    assert model.config.num_hidden_layers == 3 and len(model.bert.encoder.layer) == 3
    model.eval()
    with torch.no_grad():
        exported = model(**tiny_inputs()).logits
        stack.eval()
        model.bert.encoder.layer = stack  # the successor path before export gives the same logits
        assert torch.equal(model(**tiny_inputs()).logits, exported)


def test_export_saves_standard_model(tmp_path):
    model = tiny_model(layers=6)
    trainer = CompressionTrainer(model=model, args=_args(tmp_path, max_steps=4), train_dataset=_rows(),
                                 compression=[TheseusConfig(successor_layers=2, steps_for_replacing=2)])
    trainer.train()
    model.eval()
    model.save_pretrained(tmp_path / "out")
    record = get_record(model).steps[-1]
    assert record["method"] == "theseus" and record["info"]["predecessor_layers"] == 6
    assert record["config"]["successor_layers"] == 2
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == "BertForSequenceClassification" and loaded.config.num_hidden_layers == 2
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)
    assert "predecessor" not in "".join(n for n, _ in loaded.named_parameters())


@pytest.mark.subprocess
def test_export_loads_without_hfcompress(tmp_path):
    import subprocess
    import sys

    model = tiny_model(layers=4)
    CompressionTrainer(model=model, args=_args(tmp_path, max_steps=2), train_dataset=_rows(),
                       compression=[TheseusConfig(successor_layers=2, steps_for_replacing=1)]).train()
    model.save_pretrained(tmp_path / "out")
    code = ("from transformers import AutoModelForSequenceClassification as A\n"
            f"m = A.from_pretrained({str(tmp_path / 'out')!r}); assert m.config.num_hidden_layers == 2\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_callback_and_trainer_give_the_same_successor(tmp_path):
    config = dict(successor_layers=3, replacing_rate=0.5, steps_for_replacing=3)
    a, b = tiny_model(layers=6), tiny_model(layers=6)
    Trainer(model=a, args=_args(tmp_path / "a", max_steps=5), train_dataset=_rows(),
            callbacks=[TheseusCallback(TheseusConfig(**config))]).train()
    CompressionTrainer(model=b, args=_args(tmp_path / "b", max_steps=5), train_dataset=_rows(),
                       compression=[TheseusConfig(**config)]).train()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0, msg=name)


def test_resume_continues_schedule(tmp_path):
    config = dict(successor_layers=3, replacing_rate=0.5, steps_for_replacing=4)
    straight = tiny_model(layers=6)
    Trainer(model=straight, args=_args(tmp_path / "s", max_steps=8), train_dataset=_rows(),
            callbacks=[TheseusCallback(TheseusConfig(**config))]).train()

    interrupted = tiny_model(layers=6)
    args = _args(tmp_path / "r", max_steps=8, save_strategy="steps", save_steps=3)
    trainer = Trainer(model=interrupted, args=args, train_dataset=_rows(),
                      callbacks=[TheseusCallback(TheseusConfig(**config))])

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    trainer.add_callback(Stop())
    trainer.train()
    resumed = tiny_model(layers=6, seed=123)  # different init: everything must come from the checkpoint
    Trainer(model=resumed, args=_args(tmp_path / "r", max_steps=8), train_dataset=_rows(),
            callbacks=[TheseusCallback(TheseusConfig(**config))]).train(
                resume_from_checkpoint=str(tmp_path / "r" / "run" / "checkpoint-3"))
    assert resumed.config.num_hidden_layers == 3
    for (name, pa), (_, pb) in zip(straight.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0, msg=name)


def test_distillation_needs_teacher_and_runs(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        CompressionTrainer(model=tiny_model(layers=6), args=_args(tmp_path), train_dataset=_rows(),
                           distillation=DistillationConfig())
    model, teacher = tiny_model(layers=6), tiny_model(layers=6)
    trainer = CompressionTrainer(model=model, args=_args(tmp_path, max_steps=3), train_dataset=_rows(),
                                 compression=[TheseusConfig(successor_layers=3, steps_for_replacing=1)],
                                 teacher=teacher, distillation=DistillationConfig(temperature=2.0, alpha=0.7))
    trainer.train()
    assert model.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 6


def test_trainer_hidden_state_term_follows_the_drawn_path(tmp_path):
    teacher = tiny_model(layers=6)
    model = copy.deepcopy(teacher)
    distillation = DistillationConfig(alpha=0.5, hidden_weight=1.0)
    trainer = CompressionTrainer(model=model, args=_args(tmp_path), train_dataset=_rows(),
                                 compression=[TheseusConfig(successor_layers=3, steps_for_replacing=100)],
                                 teacher=teacher, distillation=distillation)
    stack = get_adapter(model).layers(model)
    _train_without_dropout(model)
    inputs = {**tiny_inputs(), "labels": torch.tensor([0, 1, 2])}
    for step in range(50):  # a draw that mixes successor and predecessor blocks
        stack.set_step(step, 0.5)
        if 0 < sum(stack.draw()) < 3:
            break
    stack.set_step(step, 0.5)
    loss = trainer.compute_loss(model, dict(inputs))
    stack.set_step(step, 0.5)  # replay the same draw
    outputs = model(**inputs, output_hidden_states=True)
    reference = teacher(**tiny_inputs(), output_hidden_states=True)
    expected = (distillation_loss(outputs.logits, reference.logits, outputs.loss, distillation)
                + hidden_state_loss(outputs.hidden_states, reference.hidden_states, stack.output_depths))
    torch.testing.assert_close(loss, expected)


def test_unknown_training_config_rejected(tmp_path):
    with pytest.raises(TypeError, match="cannot train with dict"):
        CompressionTrainer(model=tiny_model(), args=_args(tmp_path), train_dataset=_rows(), compression=[{}])
