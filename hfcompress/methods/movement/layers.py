"""Movement pruning's modules: masked linears (W * M(S)) while training, compact sparse storage after."""

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


class _AddL1Gradient(torch.autograd.Function):
    """Identity on the scores whose backward adds the gradient of ``scale * sum(sigmoid(S))``.

    The soft-movement penalty enters through the gradient rather than the loss, so it is applied
    the same way in a plain ``Trainer`` (which has no hook to add a loss term) and in
    ``CompressionTrainer``.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(scores)
        ctx.scale = scale
        return scores.view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scores,) = ctx.saved_tensors
        sigmoid = torch.sigmoid(scores)
        return grad + ctx.scale * sigmoid * (1 - sigmoid), None


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
        self.value = config.initial_remaining if config.pruning_method in ("topK", "magnitude") else config.initial_threshold
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
        # Set by the callback each step: weight of this layer's share of the soft-movement penalty.
        self.regularization_scale = 0.0

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
        if self.mask_scores is None:
            return self._magnitude()
        if self.training and self.regularization_scale and torch.is_grad_enabled():
            return _AddL1Gradient.apply(self.mask_scores, self.regularization_scale)
        return self.mask_scores

    def mask(self) -> torch.Tensor:
        """The current mask, expanded to the weight's shape."""
        scores = self._unit_scores()
        if self.config.pruning_method in ("topK", "magnitude"):
            unit_mask = _TopK.apply(scores, self.value)
        elif self.config.pruning_method == "threshold":
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


_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as uint8 bytes, 8 entries per byte (most significant bit first)."""
    flat = mask.flatten().to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 8))
    return (flat.view(-1, 8) * _BIT_WEIGHTS.to(flat.device)).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` bits as a flat bool tensor."""
    bits = packed[:, None].bitwise_and(_BIT_WEIGHTS.to(packed.device)) != 0
    return bits.flatten()[:numel]


class SparseStoredLinear(nn.Module):
    """A Linear saved as (kept values, bit mask); computes with the dense weight it rebuilds.

    Example:
        >>> layer = SparseStoredLinear.from_linear(pruned_linear)  # pruned_linear.weight has zeros
        >>> layer.weight_values.numel() == int((pruned_linear.weight != 0).sum())
        True
    """

    def __init__(self, in_features: int, out_features: int, nnz: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_values = nn.Parameter(torch.zeros(nnz, device=device, dtype=dtype))
        self.register_buffer("weight_bitmask", torch.zeros((in_features * out_features + 7) // 8,
                                                           dtype=torch.uint8, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        self._dense: torch.Tensor | None = None
        self._dense_from: tuple | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "SparseStoredLinear":
        weight = linear.weight.detach()
        keep = weight != 0
        layer = cls(linear.in_features, linear.out_features, int(keep.sum()), linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight_values.copy_(weight[keep])
            layer.weight_bitmask.copy_(pack_bits(keep))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def _dense_weight(self) -> torch.Tensor:
        mask = unpack_bits(self.weight_bitmask, self.in_features * self.out_features)
        if mask.sum() != self.weight_values.numel():
            raise ValueError(
                f"Sparse weight is inconsistent: the bit mask keeps {int(mask.sum())} entries but "
                f"{self.weight_values.numel()} values were loaded. The checkpoint is damaged; save it again."
            )
        dense = torch.zeros(self.out_features * self.in_features, dtype=self.weight_values.dtype,
                            device=self.weight_values.device)
        dense = dense.masked_scatter(mask, self.weight_values)
        return dense.view(self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight (zeros where pruned)."""
        if torch.is_grad_enabled() and self.weight_values.requires_grad:
            return self._dense_weight()  # differentiable: fine-tuning updates the kept values only
        key = (self.weight_values.data_ptr(), self.weight_values._version, self.weight_bitmask._version,
               self.weight_values.dtype, self.weight_values.device)
        if self._dense is None or key != self._dense_from:
            with torch.no_grad():
                self._dense = self._dense_weight()
            self._dense_from = key
        return self._dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def to_linear(self) -> nn.Linear:
        """A plain dense Linear with the same weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight_values.device, dtype=self.weight_values.dtype)
        with torch.no_grad():
            linear.weight.copy_(self._dense_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        density = self.weight_values.numel() / max(self.in_features * self.out_features, 1)
        return f"in_features={self.in_features}, out_features={self.out_features}, density={density:.3f}"
