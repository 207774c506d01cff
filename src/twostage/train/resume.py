"""Resumable training state, kept outside every declared output.

Snakemake deletes a job's declared outputs before rerunning it, and DVC only
tracks what the pipeline declares, so the state lives under ``.twostage-state/``.
A training loop saves it every ``checkpoint_every`` steps (params/config.yaml);
a rerun after a crash or a kill picks it up and, because the RNG states are
saved with the weights, ends exactly where an uninterrupted run would. The
state is tied to the params it was made with (a fingerprint), and deleted by
the CLI once the job has written everything: a kill while the last outputs are
written then costs the steps after the last save, not the whole training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from twostage import paths
from twostage.artifacts import load_torch, save_torch

log = logging.getLogger("twostage")


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def resume_fingerprint(spec: dict, *tied_to: Any) -> str:
    """The fingerprint of a training of entry ``spec`` that also depends on ``tied_to``.

    The skip budget (``skip_nonfinite_steps``) is left out: it does not change the run up
    to a bad step, so raising it after a failure resumes from the saved state, not restarts.
    """
    return fingerprint({k: v for k, v in spec.items() if k != "skip_nonfinite_steps"}, *tied_to)


class ResumableState:
    """The training state of one job: ``parts`` (anything with ``state_dict`` /
    ``load_state_dict``: model, optimiser, batches, log, ...) and ``generators``."""

    def __init__(
        self,
        stage: str,
        name: str,
        fingerprint: str,
        every: int,
        parts: dict[str, Any] | None = None,
        generators: tuple[torch.Generator, ...] = (),
    ):
        self.path = Path(paths.training_state(stage, name))
        self.fingerprint = fingerprint
        self.every = every
        self.parts = parts or {}
        self.generators = generators

    def restore(self) -> int:
        """Load the saved state into the parts and generators; return the first step to run."""
        state = self.load()
        if state is None:
            return 1
        for key, part in self.parts.items():
            part.load_state_dict(state[key])
        restore_rng(state["rng"], *self.generators)
        return state["step"] + 1

    def save_if_due(self, step: int, total: int) -> None:
        if self.due(step, total):
            parts = {key: part.state_dict() for key, part in self.parts.items()}
            self.save(step, rng=rng_state(*self.generators), **parts)

    def load(self) -> dict | None:
        """The saved state if it belongs to these params, else None (start fresh)."""
        if not self.path.exists():
            return None
        try:
            state = load_torch(self.path)
        except ValueError as exc:  # a state file cut short can only be discarded
            log.warning("ignoring unreadable training state %s (%s)", self.path, exc)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning("ignoring training state %s: made with other params", self.path)
            return None
        log.info("resuming from %s at step %d", self.path, state["step"])
        return state

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def save(self, step: int, **objects: Any) -> None:
        save_torch(self.path, {"fingerprint": self.fingerprint, "step": step, **objects})


def rng_state(*generators: torch.Generator) -> dict:
    """Everything random a training loop consumes: the global CPU RNG and its generators."""
    return {
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in generators],
    }


def restore_rng(state: dict, *generators: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    for g, s in zip(generators, state["generators"], strict=True):
        g.set_state(s)
