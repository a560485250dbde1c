"""Fit a training run into a wall-clock budget (``core/training/train.py --time-budget``).

The first epochs of a run pay one-off costs that later epochs do not: CUDA context creation, cuDNN
autotuning for every new shape (forward, then backward once frozen layers thaw), data-worker start-up.
On an H100 the first ResNet18 epoch took 10.8 s and the next ones 1.7 s, so pricing the whole run at
the first epoch's rate stopped it after 18 of the 118 epochs that fit. The plan is therefore revised
after each of the first ``PLAN_EPOCHS`` epochs, each epoch priced at the fastest one seen so far; after
that it is fixed, so the cosine schedule only moves early, while the learning rate is still high.
"""
from __future__ import annotations

import math
from typing import Sequence

PLAN_EPOCHS = 3


def plan_epochs(budget_s: float, epoch_seconds: Sequence[float], done: int, requested: int) -> int:
    """The number of epochs (counted from epoch 0) that fits into ``budget_s``.

    Args:
        budget_s: training seconds allowed for this run (counted from its first epoch).
        epoch_seconds: durations of the epochs this run has finished, in order (at least one).
        done: epochs finished in total (a resumed run counts its earlier epochs too).
        requested: the ``--epochs`` asked for; never exceeded.

    Returns:
        ``done + floor(remaining / fastest)``, at least ``done`` (the run ends now) and at most
        ``requested``; ``remaining`` is the budget left after the epochs already run.
    """
    if not epoch_seconds:
        raise ValueError("plan_epochs: needs the duration of at least one finished epoch")
    remaining = budget_s - sum(epoch_seconds)
    fastest = max(min(epoch_seconds), 1e-6)
    more = max(0, math.floor(remaining / fastest))
    return max(done, min(requested, done + more))
