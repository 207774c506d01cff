"""The priors' learning-rate schedules: linear warm-up, then constant or cosine decay."""

import pytest

from twostage.train.common import scheduled_lr, warmup_lr


def test_constant_is_the_warmup_schedule():
    for step in range(0, 300, 7):
        assert scheduled_lr(step, 1e-3, 100, 300) == warmup_lr(step, 1e-3, 100)


def test_cosine_shares_the_warmup_then_decays_to_a_tenth_at_the_last_step():
    lrs = [scheduled_lr(s, 1e-3, 100, 300, "cosine") for s in range(300)]
    assert lrs[:100] == [warmup_lr(s, 1e-3, 100) for s in range(100)]
    assert lrs[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[99:], lrs[100:], strict=False))  # non-increasing
    assert lrs[199] == pytest.approx(0.55e-3, rel=0.02)  # half-way: the cosine's midpoint
    assert lrs[-1] == pytest.approx(1e-4)
    assert scheduled_lr(400, 1e-3, 100, 300, "cosine") == pytest.approx(1e-4)  # held after


def test_cosine_without_warmup_and_unknown_schedules():
    assert scheduled_lr(0, 1.0, 0, 10, "cosine") < 1.0
    assert scheduled_lr(9, 1.0, 0, 10, "cosine") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule 'linear'"):
        scheduled_lr(0, 1.0, 0, 10, "linear")
