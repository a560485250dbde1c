"""maskstream core: pure computation (models, saliency maps, boxes, metrics).

Nothing in this package starts threads, opens windows or sockets.
"""
from __future__ import annotations

from core.cams import METHODS, get_method
from core.explain import Explanation, explain, explain_features

__all__ = ["explain", "explain_features", "Explanation", "METHODS", "get_method"]
