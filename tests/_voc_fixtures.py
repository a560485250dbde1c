"""Generated facemask_voc-like data roots for the data tests (no real data)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

BG = (128, 128, 128)
# one pure colour per face, far from each other and from the grey background (BGR)
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]


def write_voc_root(root: Path, specs: list[dict]) -> list[dict]:
    """Write images with solid-colour faces and their annotations.json.

    Each spec: {"file": name, "w": W, "h": H, "boxes": [(label, (x1, y1, x2, y2)), ...]};
    box k is painted in COLOURS[k].
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    ann = []
    for s in specs:
        img = np.full((s["h"], s["w"], 3), BG, np.uint8)
        for k, (_, (x1, y1, x2, y2)) in enumerate(s["boxes"]):
            img[y1:y2, x1:x2] = COLOURS[k]
        cv2.imwrite(str(root / "images" / s["file"]), img)  # PNG keeps colours exact
        ann.append({"file": f"images/{s['file']}", "width": s["w"], "height": s["h"],
                    "boxes": [{"label": lab, "xyxy": list(b)} for lab, b in s["boxes"]]})
    (root / "annotations.json").write_text(json.dumps(ann))
    return ann
