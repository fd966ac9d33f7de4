"""Settings of movement pruning (Sanh, Wolf, Rush 2020, arXiv 2005.07683) and its magnitude baseline."""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig, check_choice, check_range, check_subset

PRUNING_METHODS = ("topK", "threshold", "sigmoied_threshold", "magnitude")
SCORE_INITS = ("zeros", "magnitude")
GRANULARITIES = ("element", "row", "head")


@dataclass
class MovementPruningConfig(MethodConfig):
    """Learn which encoder weights to keep while fine-tuning.

    Every attention (q, k, v, o) and FFN (in, out) linear gets importance scores S; the forward
    uses W * M(S). ``pruning_method``:
      - ``"topK"`` (hard movement): M keeps the top ``remaining(t)`` fraction of S, gradients reach
        S straight through;
      - ``"magnitude"``: the same top-k on |W| (the baseline; no scores are learned);
      - ``"threshold"``: M = 1[S > tau(t)], straight through;
      - ``"sigmoied_threshold"`` (soft movement): M = 1[sigmoid(S) > tau(t)] with an L1 penalty
        ``regularization_lambda * mean(sigmoid(S))`` that drives scores down.
    The schedule value (remaining fraction for topK/magnitude, tau for the threshold methods) is
    held at its initial value for ``initial_warmup`` steps, follows the cubic
    ``final + (initial - final) * (1 - progress)^3``, and is held at ``final`` for the last
    ``final_warmup`` steps. Warm-ups below 1 are fractions of the run's total steps.
    With ``target_remaining=True`` the threshold methods follow the remaining-fraction schedule
    instead: tau is set every step to the global cutoff over all targeted weights, so soft
    movement ends at ``final_remaining`` while deciding per layer how much to keep.
    ``granularity`` "row" scores whole FFN neurons / attention output units, "head" whole heads,
    so the result can be physically shrunk.
    ``scores_init="zeros"`` is the paper's start: every weight ties, and the first pruning step
    ranks on whatever movement the dense warm-up accumulated. That needs a long warm-up (the
    paper: about an epoch of a large dataset); on a short budget it prunes nearly at random.
    ``"magnitude"`` starts S at |W| / mean|W| per layer (row norms for row/head granularity), so
    pruning starts from the magnitude ranking and the learned movement re-ranks it from there.

    Example:
        >>> MovementPruningCallback(MovementPruningConfig(pruning_method="topK", final_remaining=0.1))
    """

    name: ClassVar[str] = "movement"
    pruning_method: str = field(default="topK", metadata={"help": "topK | threshold | sigmoied_threshold | magnitude"})
    final_remaining: float = field(default=0.1, metadata={"help": "topK/magnitude: fraction of weights kept at the end."})
    initial_remaining: float = field(default=1.0, metadata={"help": "topK/magnitude: fraction kept at the start."})
    initial_threshold: float = field(default=0.0, metadata={"help": "threshold methods: tau at the start."})
    final_threshold: float = field(default=0.1, metadata={"help": "threshold methods: tau at the end."})
    initial_warmup: float = field(default=0.1, metadata={"help": "Dense steps at the start (fraction of total if < 1)."})
    final_warmup: float = field(default=0.2, metadata={"help": "Steps held at the final value (fraction if < 1)."})
    granularity: str = field(default="element", metadata={"help": "element | row | head"})
    regularization_lambda: float = field(default=0.0, metadata={"help": "L1 weight on sigmoid(scores) (soft movement)."})
    scores_learning_rate: float = field(default=1e-2, metadata={"help": "Learning rate of the score parameters."})
    targets: list[str] = field(default_factory=lambda: ["attention", "ffn"], metadata={"help": "attention ffn"})
    target_remaining: bool = field(default=False, metadata={
        "help": "threshold methods: instead of the tau schedule, set tau each step to the global score cutoff that "
                "keeps the cubic initial_remaining -> final_remaining schedule (each layer's share is learned)."})
    scores_init: str = field(default="zeros", metadata={
        "help": "zeros (the paper) | magnitude (start from |W| ranking: short budgets, fine-tuned start)"})
    sparse_storage: bool = field(default=False, metadata={
        "help": "element granularity: save pruned linears as kept values + a bit mask (restored by from_pretrained)."})

    # Deprecated spelling of pruning_method (``method`` is the record name, "movement", as on every
    # config); accepted for one release.
    method: InitVar[str | None] = None

    def __post_init__(self, method: str | None) -> None:
        if method is not None:
            warnings.warn("MovementPruningConfig(method=...) is now pruning_method=...; `method` is the record name "
                          "'movement' on every config. method= will stop working in the next release.",
                          FutureWarning, stacklevel=3)
            self.pruning_method = method
        check_choice("pruning_method", self.pruning_method, PRUNING_METHODS)
        check_choice("scores_init", self.scores_init, SCORE_INITS)
        check_choice("granularity", self.granularity, GRANULARITIES)
        for name in ("final_remaining", "initial_remaining"):
            check_range(name, getattr(self, name), 0, 1, low_open=True, what="fraction of weights kept")
        if self.final_remaining > self.initial_remaining:
            raise ValueError("final_remaining must not exceed initial_remaining (pruning only removes weights).")
        for name in ("initial_warmup", "final_warmup", "regularization_lambda", "scores_learning_rate"):
            check_range(name, getattr(self, name), 0)
        check_subset("targets", self.targets, ("attention", "ffn"))
        if self.target_remaining and self.pruning_method not in ("threshold", "sigmoied_threshold"):
            raise ValueError("target_remaining applies to the threshold methods; topK and magnitude already follow "
                             "final_remaining.")
        if self.sparse_storage and self.granularity != "element":
            raise ValueError("sparse_storage is for element granularity; structured results are physically shrunk.")
        if self.granularity == "head" and self.targets != ["attention"]:
            raise ValueError("granularity='head' scores attention heads: use targets=['attention'].")

    @property
    def uses_scores(self) -> bool:
        return self.pruning_method != "magnitude"


# The dataclass took `method`'s InitVar default into __init__; drop the class attribute so
# `config.method` is MethodConfig's record name again.
del MovementPruningConfig.method
