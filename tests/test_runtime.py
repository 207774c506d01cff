"""CPU bf16 autocast: used only where requested, on CPU, and native to the processor."""

import pytest
import torch

from twostage import runtime


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
