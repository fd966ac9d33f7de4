import copy

import pytest
import torch
from transformers import TrainingArguments

from hfcompress import CompressionTrainer, DistillationConfig, WeightSharingConfig, compress
from hfcompress.distillation import distillation_loss, hidden_state_loss

from .conftest import tiny_inputs, tiny_model


def _hidden(model):
    return model(**tiny_inputs(), output_hidden_states=True).hidden_states


def test_hidden_state_loss_is_zero_for_the_teacher_itself_and_maps_blocks():
    teacher = tiny_model(layers=4)
    assert hidden_state_loss(_hidden(teacher), _hidden(teacher)).item() == 0.0
    student = tiny_model(layers=2, seed=1)
    student_hidden, teacher_hidden = _hidden(student), _hidden(teacher)
    # 2 student layers onto 4 teacher layers: student layer 1 -> teacher 2, student 2 -> teacher 4.
    expected = (torch.nn.functional.mse_loss(student_hidden[1], teacher_hidden[2])
                + torch.nn.functional.mse_loss(student_hidden[2], teacher_hidden[4])) / 2
    torch.testing.assert_close(hidden_state_loss(student_hidden, teacher_hidden), expected)


def test_hidden_state_loss_rejects_deeper_student_and_other_width():
    with pytest.raises(ValueError, match="no more than the teacher"):
        hidden_state_loss(_hidden(tiny_model(layers=4)), _hidden(tiny_model(layers=2)))
    with pytest.raises(ValueError, match="equal hidden sizes"):
        hidden_state_loss(_hidden(tiny_model(layers=2)), _hidden(tiny_model(layers=2, hidden=64)))
    with pytest.raises(ValueError, match="hidden_weight"):
        DistillationConfig(hidden_weight=-1.0)


def test_trainer_adds_the_weighted_hidden_state_term(tmp_path):
    teacher = tiny_model(layers=4)
    student = compress(copy.deepcopy(teacher), WeightSharingConfig(group_size=2, init="mean"))
    inputs = {**tiny_inputs(), "labels": torch.tensor([0, 1, 2])}
    args = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True)
    config = DistillationConfig(hidden_weight=2.0)
    trainer = CompressionTrainer(model=student, args=args, teacher=teacher, distillation=config)
    student.eval()  # no dropout: the two computations below must see the same forward
    loss = trainer.compute_loss(student, inputs)
    teacher_out = teacher(**tiny_inputs(), output_hidden_states=True)
    student_out = student(**inputs, output_hidden_states=True)
    logits_only = distillation_loss(student_out.logits, teacher_out.logits, student_out.loss, config)
    expected = logits_only + 2.0 * hidden_state_loss(student_out.hidden_states, teacher_out.hidden_states)
    assert loss.item() > logits_only.item()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.bert.encoder.parameters())


def test_trainer_leaves_the_teachers_parameters_trainable(tmp_path):
    # One teacher, several students deep-copied from it in turn (a sweep over configs): a teacher
    # frozen in place by the first trainer would hand the next student frozen embeddings and classifier.
    teacher = tiny_model(layers=2)
    args = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True)
    CompressionTrainer(model=copy.deepcopy(teacher), args=args, teacher=teacher, distillation=DistillationConfig())
    assert all(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in copy.deepcopy(teacher).parameters())
