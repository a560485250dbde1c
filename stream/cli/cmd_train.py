"""``maskstream train``: train the classifier (a thin wrapper over ``core/training/train.py``)."""
from __future__ import annotations

import argparse

NAME = "train"
HELP = "train the with_mask/without_mask classifier and write a checkpoint with metrics"
DESCRIPTION = (
    "Train the classifier on facemask_crops plus face and context crops cut from facemask_voc "
    "(train side of the shared split; val selects the epoch; test is reported at the end). "
    "Writes <out>/best.pt, <out>/metrics.json and, with --export, a float16 copy. "
    "The shipped model was made with: maskstream train --export core/assets/maskstream_mobilenet_v2.pt"
)
ORDER = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.training.train import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from core.training.train import run as train_run

    return train_run(args)
