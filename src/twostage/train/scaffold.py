"""The training scaffold: what every training loop does around its model's step.

A trainer file holds only its model's step; this module holds the rest, so that each
rule is written once: the device (one GPU per rank under torchrun) and the seeded batch
generator, the non-finite guard of an entry with a skip budget, the resumable state and
its fingerprint (train/resume.py), the timed steps with their progress bar, the log, and
the metrics every trainer reports (``steps``, ``parameters``, ``train_time_s``,
``device``, and ``processes`` and ``skipped_nonfinite_steps`` where they apply)::

    run = Training(p, "train_prior", name, spec, columns, ctx)
    model = ...                                   # after the seed: its weights draw from it
    run.resume({"model": model, "optimizer": opt, "batches": batches})
    for step in run.steps(f"prior {name}"):
        row = ...                                 # the model's step, and validation when due
        run.log_step(step, row)
    metrics = {..., **run.tail(model)}
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from twostage.config import Params
from twostage.runtime import pick_device, seed_everything
from twostage.train import distributed
from twostage.train.common import CurveLog, NonFiniteGuard, evaluation_steps, step_progress
from twostage.train.resume import ResumableState, resume_fingerprint


class Training:
    """One training job of ``stage`` (``train_autoencoder`` / ``train_prior``) for entry
    ``name`` with params entry ``spec`` (``steps``, ``eval_every``, optionally
    ``skip_nonfinite_steps``) and log ``columns``.

    ``ctx`` is the process group of a data-parallel trainer (train/distributed.py); a
    single-process trainer passes none, and its metrics then name no ``processes``.
    Making it seeds every RNG (``gen`` draws the batches): build the models after it.
    """

    def __init__(
        self,
        p: Params,
        stage: str,
        name: str,
        spec: dict,
        columns: list[str],
        ctx: distributed.Context | None = None,
    ):
        self.p, self.stage, self.name, self.spec = p, stage, name, spec
        self.data_parallel = ctx is not None
        self.ctx = ctx if ctx is not None else distributed.Context()
        self.device = self.ctx.device(pick_device(p["device"]))
        self.gen = seed_everything(p["seed"])
        self.total = spec["steps"]
        self.eval_at = evaluation_steps(spec["steps"], spec["eval_every"])
        self.log = CurveLog(columns)
        # Only the entries with a skip budget have a guard (and save its count).
        skips = spec.get("skip_nonfinite_steps")
        self.guard = NonFiniteGuard(skips) if skips is not None else None
        self.state: ResumableState | None = None
        self.first = 1
        self.progress = None
        self.train_time = 0.0

    def resume(
        self,
        parts: dict[str, Any],
        generators: tuple[torch.Generator, ...] = (),
        tied_to: tuple[Any, ...] = (),
    ) -> None:
        """Make the resumable state and load a saved one that belongs to these params.

        It holds ``parts`` (anything with ``state_dict``), the log and the guard, and the
        batch generator followed by ``generators``. Its fingerprint is the entry, then
        ``tied_to`` (the other entries the run depends on), then the seed.
        """
        parts = {**parts, "log": self.log}
        if self.guard is not None:
            parts["nonfinite"] = self.guard
        self.state = ResumableState(
            self.stage,
            self.name,
            resume_fingerprint(self.spec, *tied_to, self.p["seed"]),
            self.p["checkpoint_every"],
            parts=parts,
            generators=(self.gen, *generators),
        )
        self.first = self.state.restore()

    def steps(self, desc: str) -> Iterator[int]:
        """The steps still to run (1-based), with a progress bar on rank 0; the time they
        take, up to the last or to a ``break``, is ``train_time``."""
        self.progress = step_progress(self.first, self.total, desc, disable=not self.ctx.is_main)
        start = time.perf_counter()
        try:
            yield from self.progress
        finally:
            self.train_time = time.perf_counter() - start

    def log_step(self, step: int, row: dict[str, float]) -> None:
        """Log the step's values, then save the resumable state when due (rank 0 only)."""
        self.log.add(step, **row)
        if self.ctx.is_main and self.state is not None:
            self.state.save_if_due(step, self.total)

    def tail(self, *modules: torch.nn.Module) -> dict[str, Any]:
        """The metrics every trainer ends with; ``parameters`` counts those of ``modules``."""
        metrics: dict[str, Any] = {"steps": self.total}
        if self.guard is not None:
            metrics["skipped_nonfinite_steps"] = len(self.guard.skipped)
        if self.data_parallel:
            metrics["processes"] = self.ctx.world_size
        metrics["parameters"] = sum(q.numel() for m in modules for q in m.parameters())
        metrics["train_time_s"] = self.train_time
        metrics["device"] = str(self.device)
        return metrics
