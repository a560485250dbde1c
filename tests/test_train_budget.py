"""core/training/train_budget.plan_epochs: fitting a run into --time-budget, on hand-computed timings."""
import pytest

from core.training.train_budget import plan_epochs


def test_first_epoch_alone_prices_every_epoch_at_its_rate():
    # 200 s, the first epoch took 10.8 s: 189.2 s left / 10.8 = 17.5 -> 17 more, 18 in all
    assert plan_epochs(200, [10.8], done=1, requested=120) == 18


def test_later_fast_epoch_replans_upwards():
    # the H100 ResNet18 run: 10.8 s (warm-up) then 1.7 s: 187.5 / 1.7 = 110.3 -> 110 more, 112 in all
    assert plan_epochs(200, [10.8, 1.7], done=2, requested=120) == 112


def test_one_off_spike_is_paid_once_not_per_epoch():
    # mobilenet_v2 unfreezing in epoch 2 (37.6 s) then 4.0 s: 110 - 55.7 = 54.3 -> 13 more, 16 in all
    assert plan_epochs(110, [14.1, 37.6, 4.0], done=3, requested=30) == 16


def test_never_more_than_requested_and_never_less_than_done():
    assert plan_epochs(1000, [1.0], done=1, requested=5) == 5
    assert plan_epochs(10, [30.0, 30.0], done=2, requested=50) == 2  # budget already spent: stop now
    # a resumed run counts its earlier epochs: 6 done before, 1 here of 10 s, 25 s left -> 2 more
    assert plan_epochs(35, [10.0], done=7, requested=40) == 9


def test_needs_a_timing():
    with pytest.raises(ValueError):
        plan_epochs(10, [], done=0, requested=3)
