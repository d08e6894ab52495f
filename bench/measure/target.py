"""Quality during training: held-out evaluations every few steps, and time to a target.

A case with ``eval_every`` evaluates on held-out data every that many measured steps, which gives
a quality curve; with ``target_metric`` and ``target_value`` it also stops once the target is
reached, and records when: the MLPerf way of comparing training setups, by the time to reach a
quality rather than the time per step (Mattson et al. 2020, "MLPerf Training Benchmark").

- Reached: a loss-like metric (``loss``, ``perplexity``) at or below the value, ``accuracy`` at
  or above it (``config.TARGET_DIRECTIONS``).
- Evaluated: every ``eval_every`` measured steps, and at the window's last step (the held-out
  evaluation every case ends with), so that a budget that ends between two periodic evaluations,
  or before the first (a short ``max_time_s``), still has its last steps judged.
- ``steps_to_target``: training steps (first step and warm-up included) before the first
  evaluation that met the target; its resolution is ``eval_every`` (or the window's end).
- ``time_to_target_s``: the training time of those steps (the first step's, compilation
  included, the warm-up's, and the measured steps' own times); evaluations are in no step's time,
  and their total is reported on its own (``eval_s``).
- The budget is the window's: ``max_steps`` and ``max_time_s`` (training time, evaluations
  excluded). A target not reached by then says which one ended the run (``budget``).

Pure bookkeeping, torch-free: the worker runs the evaluations and times them.
"""

from dataclasses import dataclass, field
from typing import Any

from bench.errors import CaseError
from bench.spec.choices import TARGET_DIRECTIONS


def met(metric: str, value: float, target: float, direction: str | None = None) -> bool:
    """Whether ``value`` of ``metric`` reaches ``target`` (NaN never does); ``direction``
    (``max`` or ``min``) where the metric is not one of ``TARGET_DIRECTIONS`` (a user's)."""
    if (direction or TARGET_DIRECTIONS[metric]) == "max":
        return value >= target
    return value <= target


@dataclass
class QualityTracker:
    """The evaluations of a window, and the first one that met the target (if any)."""

    metric: str | None
    """The target's metric; None: evaluations for the curve only."""
    value: float | None
    steps_before: int
    """Training steps before the window (the first step and warm-up)."""
    time_before_s: float
    """Their training time (first step and warm-up)."""
    curve: list[list[Any]] = field(default_factory=list)
    """``[steps, training seconds, {metric: value}]`` per evaluation."""
    eval_s: float = 0.0
    reached_at: tuple[int, float] | None = None
    direction: str | None = None
    """``max`` or ``min`` for a metric ``TARGET_DIRECTIONS`` does not know (a user's
    ``Workload.directions``)."""

    def record(
        self, window_steps: int, window_train_s: float, evaluation: dict[str, float], eval_s: float
    ) -> bool:
        """Add one evaluation after ``window_steps`` measured steps that took ``window_train_s``
        seconds in all; True when it is the first to meet the target (time to stop)."""
        steps = self.steps_before + window_steps
        train_s = self.time_before_s + window_train_s
        self.curve.append([steps, train_s, evaluation])
        self.eval_s += eval_s
        if self.metric is None or self.reached_at is not None:
            return False
        if self.metric not in evaluation:
            raise CaseError(
                f"target_metric = {self.metric!r}: the evaluation returns "
                f"{', '.join(sorted(evaluation)) or 'no metric'}"
            )
        value = evaluation[self.metric]
        if met(self.metric, value, self.value, self.direction):  # type: ignore[arg-type]
            self.reached_at = (steps, train_s)
            return True
        return False

    def record_end(
        self, window_steps: int, window_train_s: float, evaluation: dict[str, float], eval_s: float
    ) -> bool:
        """Add the evaluation at the window's end, like :meth:`record`, unless a periodic one was
        at that very step (the same weights: judged already). True when it was added."""
        if self.curve and self.curve[-1][0] == self.steps_before + window_steps:
            return False
        self.record(window_steps, window_train_s, evaluation, eval_s)
        return True

    def target_result(self, stop_reason: str) -> dict[str, Any] | None:
        """``metrics.target`` (docs/RESULTS.md); None without a target."""
        if self.metric is None:
            return None
        values = [e[self.metric] for _, _, e in self.curve if e.get(self.metric) is not None]
        best = None
        if values:
            direction = self.direction or TARGET_DIRECTIONS[self.metric]
            best = max(values) if direction == "max" else min(values)
        reached = self.reached_at is not None
        return {
            "metric": self.metric,
            "value": self.value,
            "reached": reached,
            "steps_to_target": self.reached_at[0] if reached else None,
            "time_to_target_s": self.reached_at[1] if reached else None,
            # What ended a run that missed: the step budget (max_steps) or the time budget.
            "budget": None if reached else stop_reason,
            "best": best,
            "num_evals": len(self.curve),
            "eval_s": self.eval_s,
        }
