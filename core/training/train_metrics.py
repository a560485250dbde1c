"""Classification metrics per domain (accuracy, balanced accuracy, per-class recall)."""
from __future__ import annotations

import numpy as np

from core.data.training_set import CLASS_NAMES, DOMAINS


def binary_metrics(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, balanced accuracy (mean of the per-class recalls present) and each class's recall.

    Args:
        pred: (N,) predicted class index.
        labels: (N,) true class index.
    """
    out: dict = {"n": int(len(labels))}
    if len(labels) == 0:
        return out
    out["accuracy"] = float((pred == labels).mean())
    recalls = []
    for ci, c in enumerate(CLASS_NAMES):
        m = labels == ci
        out[f"n_{c}"] = int(m.sum())
        if m.any():
            r = float((pred[m] == ci).mean())
            out[f"{c}_recall"] = r
            recalls.append(r)
    out["balanced_accuracy"] = float(np.mean(recalls))
    return out


def domain_metrics(logits: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> dict:
    """``{domain: binary_metrics, ..., "all": ..., "score": mean balanced accuracy over domains present}``."""
    pred = logits.argmax(1)
    out = {d: binary_metrics(pred[domains == di], labels[domains == di]) for di, d in enumerate(DOMAINS)}
    out["all"] = binary_metrics(pred, labels)
    present = [out[d]["balanced_accuracy"] for d in DOMAINS if "balanced_accuracy" in out[d]]
    out["score"] = float(np.mean(present)) if present else 0.0
    return out
