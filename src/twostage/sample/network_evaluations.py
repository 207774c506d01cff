"""Count the evaluations a token prior's network really makes while it samples.

The sampling stage reports cost as measured work, not as the configured number of
steps: the absorbing prior's compact sampler skips rows that reveal nothing and shares
one evaluation of the all-masked grid, so it calls the network on fewer rows than
``steps`` per sample.

Definitions (one sampled token grid is a "row" of the network's B × n input):

- ``calls``: forward passes of the network (each on a batch of rows);
- ``rows``: the rows those passes evaluated, summed;
- network evaluations per sample = ``rows`` / samples.

An autoregressive prior with a key/value cache feeds one new token position per row
per call, so it evaluates each row once per token: ``length`` evaluations per sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class NetworkEvaluations:
    calls: int = 0
    rows: int = 0

    def per_sample(self, samples: int) -> float:
        return self.rows / samples

    def _count(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tokens: torch.Tensor = args[0] if args else kwargs["tokens"]
        self.calls += 1
        self.rows += tokens.shape[0]


def token_prior_network(prior: nn.Module) -> nn.Module:
    """The network a token prior calls while sampling (both kinds name it ``denoiser``)."""
    return prior.denoiser


@contextmanager
def counting_evaluations(network: nn.Module) -> Iterator[NetworkEvaluations]:
    """Count ``network``'s forward passes and rows inside the block (a forward pre-hook:
    nothing about the computation or the random stream changes)."""
    counter = NetworkEvaluations()
    handle = network.register_forward_pre_hook(counter._count, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()
