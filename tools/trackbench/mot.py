"""MOT-format ground truth of one clip, and reading it back.

Layout of a clip folder (MOTChallenge's, plus a labels file)::

    <clip>/clip.mp4          the video (mp4v)
    <clip>/seqinfo.ini       name, frameRate, seqLength, imWidth, imHeight
    <clip>/gt/gt.txt         frame,id,x,y,w,h,conf,class,visibility   (frames 1-based; class 1 = face;
                             conf 0 = don't care: mask_weared_incorrect faces)
    <clip>/gt/labels.csv     frame,id,label                            (the face's class in that frame)
    <clip>/clip.json         the spec: shots, photos, camera keyframes, occluders, splices, identities

Frame ``f`` of gt.txt is the ``frame_index`` ``f - 1`` of ``maskstream run``'s events.
"""

from __future__ import annotations

import configparser
import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tools.trackbench.scene import ClipSpec, GtRow


def write_gt(folder: Path, spec: ClipSpec, rows: Sequence[GtRow]) -> None:
    """Write seqinfo.ini, gt/gt.txt, gt/labels.csv and clip.json for ``spec`` into ``folder``."""
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    ini = configparser.ConfigParser()
    ini.optionxform = str  # keep MOT's camelCase keys
    ini["Sequence"] = {"name": spec.name, "imDir": "clip.mp4", "frameRate": f"{spec.fps:g}",
                       "seqLength": str(spec.n_frames), "imWidth": str(spec.size[0]), "imHeight": str(spec.size[1]),
                       "imExt": ".mp4"}
    with open(folder / "seqinfo.ini", "w", encoding="utf-8") as fh:
        ini.write(fh)
    with open(folder / "gt" / "gt.txt", "w", encoding="utf-8") as fh:
        for r in rows:
            x1, y1, x2, y2 = r.box
            fh.write(f"{r.frame},{r.id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{r.conf},1,{r.visibility:.4f}\n")
    with open(folder / "gt" / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "id", "label"])
        for r in rows:
            w.writerow([r.frame, r.id, r.label])
    meta = {"name": spec.name, "recipe": spec.recipe, "fps": spec.fps, "size": list(spec.size),
            "frames": spec.n_frames, "notes": spec.notes, "identities": spec.identities(),
            "shots": [asdict(s) for s in spec.shots]}
    (folder / "clip.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class GroundTruth:
    """One clip's ground truth as arrays of N rows.

    Attributes:
        name: clip name.
        fps: frames per second.
        n_frames: frames in the clip.
        frame: (N,) int, 1-based.
        id: (N,) int identities.
        xyxy: (N, 4) float boxes in frame pixels.
        conf: (N,) int, 0 = don't care.
        visibility: (N,) float in [0, 1].
        label: (N,) object array of class names.
    """

    name: str
    fps: float
    n_frames: int
    frame: np.ndarray
    id: np.ndarray
    xyxy: np.ndarray
    conf: np.ndarray
    visibility: np.ndarray
    label: np.ndarray

    @classmethod
    def from_rows(cls, name: str, fps: float, n_frames: int, rows: Sequence[GtRow]) -> "GroundTruth":
        """Arrays from renderer rows (used by tests and by :func:`read_gt`)."""
        return cls(name, float(fps), int(n_frames),
                   np.array([r.frame for r in rows], np.int64), np.array([r.id for r in rows], np.int64),
                   np.array([r.box for r in rows], np.float64).reshape(-1, 4),
                   np.array([r.conf for r in rows], np.int64), np.array([r.visibility for r in rows], np.float64),
                   np.array([r.label for r in rows], dtype=object))


def read_gt(folder: str | Path) -> GroundTruth:
    """Read a clip folder written by :func:`write_gt` (ValueError naming the file when malformed)."""
    folder = Path(folder)
    ini = configparser.ConfigParser()
    ini.optionxform = str
    if not ini.read(folder / "seqinfo.ini"):
        raise ValueError(f"{folder / 'seqinfo.ini'}: missing")
    try:
        seq = ini["Sequence"]
        name, fps, n = seq["name"], float(seq["frameRate"]), int(seq["seqLength"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{folder / 'seqinfo.ini'}: {exc}") from None
    labels: dict[tuple[int, int], str] = {}
    with open(folder / "gt" / "labels.csv", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            labels[(int(rec["frame"]), int(rec["id"]))] = rec["label"]
    rows = []
    with open(folder / "gt" / "gt.txt", encoding="utf-8") as fh:
        for k, line in enumerate(fh, 1):
            parts = line.strip().split(",")
            if len(parts) < 9:
                raise ValueError(f"{folder / 'gt' / 'gt.txt'} line {k}: expected 9 fields, got {len(parts)}")
            f, i = int(parts[0]), int(parts[1])
            x, y, w, h = (float(v) for v in parts[2:6])
            if (f, i) not in labels:
                raise ValueError(f"{folder / 'gt' / 'labels.csv'}: no label for frame {f} id {i}")
            rows.append(GtRow(f, i, (x, y, x + w, y + h), int(float(parts[6])), float(parts[8]), labels[(f, i)]))
    return GroundTruth.from_rows(name, fps, n, rows)
