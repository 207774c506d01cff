"""Pieces every training loop shares: batching from in-memory arrays, LR warm-up, logs,
the EMA of weights and the best checkpoint kept by validation. The loop around them is
train/scaffold.py."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import torch
from tqdm import tqdm

from twostage.artifacts import atomic_path


class InfiniteBatches:
    """Shuffled mini-batches drawn from an in-memory tensor, epoch after epoch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next_indices(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    # Saved with the training state so a resumed run draws the same batches.
    def state_dict(self) -> dict:
        return {"order": self._order, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self._order, self._pos = state["order"], state["pos"]


def step_progress(first: int, total: int, desc: str, disable: bool = False) -> tqdm:
    """Steps first..total with a progress bar that counts a resumed run's earlier steps."""
    return tqdm(
        range(first, total + 1),
        desc=desc,
        initial=first - 1,
        total=total,
        mininterval=5,
        disable=disable,
    )


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps`` (the reference's schedule)."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "constant",
    final_fraction: float = 0.1,
) -> float:
    """The learning rate at 0-based ``step``: linear warm-up, then ``schedule``.

    ``constant`` keeps ``base_lr`` (the reference's schedule); ``cosine`` decays it along
    half a cosine to ``final_fraction`` · ``base_lr`` at the last of ``total_steps``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; expected one of {LR_SCHEDULES}")
    if schedule == "constant" or step < warmup_steps:
        return warmup_lr(step, base_lr, warmup_steps)
    progress = min(1.0, (step + 1 - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (
        final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class CurveLog:
    """Step-wise training log, written as CSV (DVC plots reads it) at the end."""

    def __init__(self, columns: list[str]):
        self.columns = ["step", *columns]
        self.rows: list[dict] = []

    def add(self, step: int, **values: float) -> None:
        self.rows.append({"step": step, **values})

    # The rows so far travel with the resumable training state.
    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = state["rows"]

    def write(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)


def _floats(terms: dict[str, torch.Tensor | float]) -> dict[str, float]:
    return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()}


def _listed(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def check_finite(step: int, **terms: torch.Tensor | float) -> None:
    """Stop with the step and every loss term when training diverges."""
    values = _floats(terms)
    if not all(math.isfinite(v) for v in values.values()):
        raise FloatingPointError(f"non-finite loss at step {step}: {_listed(values)}")


class NonFiniteGuard:
    """Skip up to ``budget`` training steps whose loss is not finite, then stop.

    One bad batch (an fp16 overflow, a rare degenerate mask) need not cost a
    run of several days, but a diverged model must never be trained on and
    saved as if it were fine: past the budget the stage stops with the step
    and every loss term, and the last resumable state stays on disk. The count
    travels with that state, so a resumed run cannot exceed the budget.
    """

    def __init__(self, budget: int = 0):
        self.budget = budget
        self.skipped: list[int] = []

    def finite(self, step: int, **terms: torch.Tensor | float) -> bool:
        """True if the step's loss terms are finite (train on it); False to skip it."""
        values = _floats(terms)
        if all(math.isfinite(v) for v in values.values()):
            return True
        if len(self.skipped) >= self.budget:
            allowed = f"; {len(self.skipped)} bad step(s) already skipped" if self.budget else ""
            raise FloatingPointError(
                f"non-finite loss at step {step}: {_listed(values)} "
                f"(skip_nonfinite_steps: {self.budget}{allowed})"
            )
        self.skipped.append(step)
        tqdm.write(f"step {step}: non-finite loss ({_listed(values)}), update skipped")
        return False

    def state_dict(self) -> dict:
        return {"skipped": list(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = list(state["skipped"])


def evaluation_steps(total: int, every: int) -> set[int]:
    """Steps (1-based) after which to validate: every ``every`` and always the last."""
    return set(range(every, total + 1, every)) | {total}


class EMA:
    """Exponential moving average of a model's weights (the paper uses decay 0.995)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p, 1.0 - self.decay)


def moving_average(model: torch.nn.Module, decay: float) -> EMA | None:
    """The EMA of ``model``'s weights, or None with ``decay`` 0 (the option is off)."""
    return EMA(model, decay) if decay > 0 else None


def evaluated(model: torch.nn.Module, ema: EMA | None) -> torch.nn.Module:
    """The weights validated and saved: the moving average's when there is one."""
    return ema.model if ema is not None else model


class BestCheckpoint:
    """The weights with the lowest selection score so far (the paper's early stopping).

    ``val`` is that score; ``values`` keeps the other numbers logged at the same step.
    """

    def __init__(self):
        self.val, self.step, self.weights, self.values = math.inf, 0, None, {}

    def update(self, val: float, step: int, model: torch.nn.Module, **values: float) -> None:
        if val < self.val:
            self.val, self.step, self.values = val, step, values
            self.weights = copy.deepcopy(model.state_dict())

    def state_dict(self) -> dict:
        return {"val": self.val, "step": self.step, "weights": self.weights, "values": self.values}

    def load_state_dict(self, state: dict) -> None:
        self.val, self.step, self.weights = state["val"], state["step"], state["weights"]
        self.values = state.get("values", {})
