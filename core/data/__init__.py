"""Data readers, splits and crop makers for training and evaluation.

- :mod:`core.data.voc`: the facemask_voc detection set (boxes, 3 labels).
- :mod:`core.data.splits`: group-aware splits; :func:`core.data.splits.voc_split` is THE
  split of facemask_voc shared by training (train/val) and evaluation (test).
- :mod:`core.data.context_crops`: square windows around one face (8-35% of the window).
- :mod:`core.data.face_crops`: face crops cut from VOC boxes; the facemask_crops folder reader.
"""
from __future__ import annotations

from core.data.errors import DataError

__all__ = ["DataError"]
