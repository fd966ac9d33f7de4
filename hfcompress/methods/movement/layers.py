"""Masked linears: W * M(S) with the mask from learned scores or from |W|."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MovementPruningConfig


class _TopK(torch.autograd.Function):
    """Keep the top ``remaining`` fraction of scores; straight-through gradient."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, remaining: float) -> torch.Tensor:
        keep = max(1, int(round(remaining * scores.numel())))
        mask = torch.zeros_like(scores)
        if keep >= scores.numel():
            return mask.fill_(1.0)
        _, index = scores.flatten().topk(keep)
        mask.view(-1)[index] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _Threshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class MaskedLinear(nn.Module):
    """A Linear whose weight is multiplied by a mask computed from scores every forward.

    ``units`` is the size of the score tensor: the weight's shape (element), its rows (row), or
    heads (head: each score covers ``head_size`` consecutive rows).

    Example:
        >>> layer = MaskedLinear(nn.Linear(384, 384), MovementPruningConfig(), rows_per_score=1)
    """

    def __init__(self, linear: nn.Linear, config: MovementPruningConfig, rows_per_score: int = 1) -> None:
        super().__init__()
        self.linear = linear
        self.config = config
        self.rows_per_score = rows_per_score
        self.value = config.initial_remaining if config.method in ("topK", "magnitude") else config.initial_threshold
        if config.uses_scores:
            shape = linear.weight.shape if config.granularity == "element" else (linear.out_features // rows_per_score,)
            # With straight-through gradients the scores accumulate the "movement" -(dL/dW * W), the
            # paper's importance, on top of where they start.
            if config.scores_init == "magnitude":
                magnitude = self._magnitude()
                initial = magnitude / magnitude.mean().clamp(min=1e-12)
            else:
                initial = torch.zeros(shape, device=linear.weight.device)
            self.mask_scores = nn.Parameter(initial)
        else:
            self.mask_scores = None

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def _magnitude(self) -> torch.Tensor:
        """|W| per scored unit: elements, or the norm of each row / head's rows."""
        magnitude = self.linear.weight.detach().abs()
        if self.config.granularity == "element":
            return magnitude
        return magnitude.view(-1, self.rows_per_score * magnitude.shape[1]).norm(dim=1)

    def _unit_scores(self) -> torch.Tensor:
        if self.mask_scores is not None:
            return self.mask_scores
        return self._magnitude()

    def mask(self) -> torch.Tensor:
        """The current mask, expanded to the weight's shape."""
        scores = self._unit_scores()
        if self.config.method in ("topK", "magnitude"):
            unit_mask = _TopK.apply(scores, self.value)
        elif self.config.method == "threshold":
            unit_mask = _Threshold.apply(scores, self.value)
        else:
            unit_mask = _Threshold.apply(torch.sigmoid(scores), self.value)
        if self.config.granularity == "element":
            return unit_mask
        return unit_mask.repeat_interleave(self.rows_per_score)[:, None].expand_as(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask().to(self.linear.weight.dtype)
        bias = self.linear.bias
        if bias is not None and self.config.granularity != "element":
            bias = bias * mask[:, 0]
        return F.linear(x, self.linear.weight * mask, bias)

    def regularization(self) -> torch.Tensor:
        """mean(sigmoid(S)): the soft-movement L1 term."""
        return torch.sigmoid(self.mask_scores).mean()

    def folded(self) -> nn.Linear:
        """A plain Linear with the mask multiplied into its weight (and pruned rows' bias); scores dropped."""
        with torch.no_grad():
            mask = self.mask().to(self.linear.weight.dtype)
            self.linear.weight.mul_(mask)
            if self.linear.bias is not None and self.config.granularity != "element":
                self.linear.bias.mul_(mask[:, 0])
        return self.linear
