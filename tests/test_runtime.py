"""CPU threads and bf16 autocast: used only where requested, on CPU, and native to the processor."""

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from twostage import cli, runtime


@pytest.fixture
def native_bf16(monkeypatch):
    """Force the detection result, as TWOSTAGE_CPU_BF16 does for users."""

    def force(value: bool):
        monkeypatch.setenv("TWOSTAGE_CPU_BF16", "1" if value else "0")
        runtime.cpu_has_native_bf16.cache_clear()

    yield force
    runtime.cpu_has_native_bf16.cache_clear()


def test_the_override_decides_the_detection(native_bf16):
    native_bf16(True)
    assert runtime.cpu_has_native_bf16()
    native_bf16(False)
    assert not runtime.cpu_has_native_bf16()


@pytest.mark.parametrize(
    ("native", "device", "requested", "expected"),
    [
        (True, "cpu", True, True),
        (True, "cpu", False, False),
        (False, "cpu", True, False),  # emulated bf16 is slower than float32: stay there
        (True, "cuda", True, False),  # CUDA has its own fp16 `amp`
    ],
)
def test_bf16_only_where_requested_and_native(native_bf16, native, device, requested, expected):
    native_bf16(native)
    assert runtime.cpu_bf16_enabled(torch.device(device), requested) is expected


def test_the_autocast_context_changes_the_matmul_dtype(native_bf16):
    a = torch.randn(4, 8)
    native_bf16(True)
    with runtime.cpu_bf16_autocast(torch.device("cpu"), True):
        assert (a @ a.T).dtype == torch.bfloat16
    native_bf16(False)
    with runtime.cpu_bf16_autocast(torch.device("cpu"), True):
        assert (a @ a.T).dtype == torch.float32


PROFILE = "params/profiles/bf16-test.yaml"
TINY_PRIOR = (
    "priors:\n"
    "  absorbing_mnist: {n_layer: 1, n_embd: 16, n_head: 2, steps: 6, eval_every: 3,"
    " warmup_steps: 2, batch_size: 16, val_elbo_samples: 1, cpu_bf16: %s,"
    " sample_fd_images: 0, select_by: val_bound}\n"
)
LINEAR_FORWARD = torch.nn.Linear.forward


def _train(token_grid_project: Path, monkeypatch, cpu_bf16: bool) -> tuple[dict, list[str], set]:
    """Train the tiny prior; (metrics, train_log rows, dtypes of (training, Linear output))."""
    seen: set[tuple[bool, torch.dtype]] = set()

    def forward(self, x):
        out = LINEAR_FORWARD(self, x)
        seen.add((self.training, out.dtype))
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", forward)
    (token_grid_project / PROFILE).write_text(TINY_PRIOR % str(cpu_bf16).lower())
    assert cli.main(["--profile", PROFILE, "train-prior", "absorbing_mnist"]) == 0
    out = token_grid_project / "results/priors/absorbing_mnist"
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, (out / "train_log.csv").read_text().splitlines(), seen


def _column(rows: list[str], name: str) -> list[float]:
    header = rows[0].split(",")
    return [
        float(r.split(",")[header.index(name)])
        for r in rows[1:]
        if r.split(",")[header.index(name)]
    ]


def test_prior_training_autocasts_to_bf16_only_where_native(
    token_grid_project, monkeypatch, native_bf16, caplog
):
    native_bf16(True)  # native, but not requested: float32
    ref_metrics, ref_rows, ref_seen = _train(token_grid_project, monkeypatch, cpu_bf16=False)
    assert ref_seen == {(True, torch.float32), (False, torch.float32)}
    assert ref_metrics["cpu_bf16_used"] is False

    # Requested and native: the training matmuls run in bf16 (all but the head, whose
    # logits stay float32), validation in float32, and the losses stay close to float32's
    # (bf16 keeps ~3 significant digits).
    metrics, rows, seen = _train(token_grid_project, monkeypatch, cpu_bf16=True)
    assert seen == {(True, torch.bfloat16), (True, torch.float32), (False, torch.float32)}
    assert metrics["cpu_bf16_used"] is True
    losses, ref_losses = _column(rows, "loss"), _column(ref_rows, "loss")
    assert all(math.isfinite(x) for x in losses)
    assert losses == pytest.approx(ref_losses, rel=2e-3)
    assert _column(rows, "val_bits") == pytest.approx(_column(ref_rows, "val_bits"), rel=1e-3)

    # Requested on a CPU without native bf16: float32, identical to not requesting it.
    native_bf16(False)
    with caplog.at_level(logging.INFO, logger="twostage"):
        metrics, rows, seen = _train(token_grid_project, monkeypatch, cpu_bf16=True)
    assert "cpu_bf16 requested, but this CPU lacks native bf16" in caplog.text
    assert seen == ref_seen and metrics["cpu_bf16_used"] is False
    assert rows == ref_rows
    assert metrics["val_bits_per_token"] == ref_metrics["val_bits_per_token"]


def test_attention_stays_float32_under_cpu_bf16_autocast(monkeypatch):
    """CPU flash attention is slower in bf16 than in float32: only the linear layers cast."""
    from twostage.models.priors.transformer import Transformer

    seen, real = [], torch.nn.functional.scaled_dot_product_attention

    def attention(q, k, v, **kwargs):
        seen.append(q.dtype)
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", attention)
    net = Transformer(9, 8, 4, n_layer=1, n_head=2, n_embd=8)
    tokens = torch.randint(0, 9, (2, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(tokens)
    assert seen == [torch.float32] and logits.dtype == torch.float32  # head: float32 too
    seen.clear()
    net(tokens)  # without autocast: untouched
    assert seen == [torch.float32]


@pytest.mark.parametrize(("causal", "new", "total"), [(False, 6, 6), (True, 6, 6), (True, 2, 6)])
def test_bf16_sampling_attention_matches_float32_attention(causal, new, total):
    """Sampling's bf16 attention (bf16 matmuls, float32 softmax) is the float32 kernel's
    attention up to bf16 rounding, with the causal mask placed after the cached keys."""
    from twostage.models.cpu_fast_paths import bf16_inference_attention

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, total, 16, generator=gen)[:, :, total - new :]
    k, v = (torch.randn(3, 2, total, 16, generator=gen) for _ in range(2))
    if causal and new < total:  # query i is position total - new + i: sees keys up to it
        mask = torch.ones(new, total, dtype=torch.bool).tril(total - new)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = bf16_inference_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.05, rtol=0.02)
    if causal:  # the first query sees only the keys up to its own position
        only_past = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, :1], k[:, :, : total - new + 1], v[:, :, : total - new + 1]
        )
        assert torch.allclose(got[:, :, :1].float(), only_past, atol=0.05, rtol=0.02)


def test_sampling_under_cpu_bf16_autocast_uses_bf16_attention(monkeypatch):
    from twostage.models import cpu_fast_paths
    from twostage.models.priors import transformer

    calls = []
    real = cpu_fast_paths.bf16_inference_attention
    monkeypatch.setattr(
        cpu_fast_paths,
        "bf16_inference_attention",
        lambda *a: calls.append(a[0].dtype) or real(*a),
    )
    net = transformer.Transformer(9, 8, 4, n_layer=1, n_head=2, n_embd=8)
    tokens = torch.randint(0, 9, (2, 4))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(tokens)
    assert calls == [torch.bfloat16] and logits.dtype == torch.float32
    with torch.no_grad():
        net(tokens)  # float32 sampling: the flash kernel, as before
    assert calls == [torch.bfloat16]


def test_a_job_keeps_torch_and_numpys_blas_to_its_granted_threads(monkeypatch):
    """Without the BLAS cap a job's NumPy reductions split over as many threads as the
    environment allows, and the same job rounds differently in and out of Snakemake."""
    from threadpoolctl import threadpool_info, threadpool_limits

    torch_threads = torch.get_num_threads()
    monkeypatch.setenv("TWOSTAGE_THREADS", "1")
    with threadpool_limits(limits=2, user_api="blas"):  # restores the caps afterwards
        try:
            runtime.set_threads()
            assert torch.get_num_threads() == 1
            blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(p["num_threads"] == 1 for p in blas), blas
        finally:
            torch.set_num_threads(torch_threads)
