"""Faces-mode speed and accuracy with people (detect less, track more) against today's every-frame path.

For each face count (720p clips made by ``tools.face_clip`` from real faces in
``../shared/data/facemask_crops``, moving, no occlusion) and each backend, the whole pipeline runs from a
file source with the events and video sinks on (every frame in the output), twice in the same run:

* ``every frame``: ``people.enabled: false``: the detector and the classifier on every frame;
* ``people, all frames``: the tracker and the vote, but the detector and the classifier on every frame;
* ``people, pan only``: the defaults, but the camera-motion model measures translation only
  (``people.camera_zoom: false``, the model before zoom was added): the zoom model's cost is the difference;
* ``people``: the defaults: the detector every k frames, re-classification when due.

Columns: frames/s (first to last rendered frame), frames out, the per-frame accuracy of the face labels
shown (a box matches the truth face whose pasted image holds its centre), face recall, and for the people path the per-person
decision accuracy (a track's last decided label against its face's label), the share of tracked boxes
still undecided, and people found against the truth. Run on an otherwise idle machine and compare only
within one run:

    python -m tools.bench_stream --crowd 1,5,20 [--crowd-frames 100] [--crowd-backends torch,onnxruntime]
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CROPS = ROOT.parent / "shared" / "data" / "facemask_crops"


def _faces(n: int, seed: int):
    from tools.face_clip import crops_from

    if CROPS.is_dir():
        return crops_from(CROPS, n, seed)
    face = cv2.imread(str(ROOT / "tests/data/astronaut_face.png"))
    masked = cv2.imread(str(ROOT / "core/assets/samples/astronaut_face_masked.png"))
    return [face if i % 2 else masked for i in range(n)], ["without_mask" if i % 2 else "with_mask" for i in range(n)]


def _inside(det_box, gt_box) -> bool:
    """The detection's centre lies in the truth box (the truth box is the whole pasted face image, larger
    than the face a detector finds in it, so IoU would understate matches)."""
    cx, cy = (det_box[0] + det_box[2]) / 2, (det_box[1] + det_box[3]) / 2
    return gt_box[0] <= cx <= gt_box[2] and gt_box[1] <= cy <= gt_box[3]


def score(records, truth) -> dict:
    """Accuracy numbers from (frame index, [(box, label, track id, person label)]) records."""
    gt_total = matched = correct = decided_ok = undecided = 0
    votes: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    last_label: dict[int, str] = {}
    for idx, dets in records:
        for gi, gbox in truth.boxes[idx]:
            gt_total += 1
            best = next((d for d in dets if _inside(d[0], gbox)), None)
            if best is None:
                continue
            matched += 1
            correct += best[1] == truth.labels[gi]
            if best[2] is not None:
                votes[best[2]][gi] += 1
                undecided += best[3] == "undecided"
                decided_ok += best[3] == truth.labels[gi]
                if best[3] != "undecided":
                    last_label[best[2]] = best[3]
    people_ok = sum(last_label.get(t, "") == truth.labels[c.most_common(1)[0][0]] for t, c in votes.items())
    return {
        "frame_acc": correct / matched if matched else float("nan"),
        "recall": matched / gt_total if gt_total else float("nan"),
        "person_acc": people_ok / len(votes) if votes else float("nan"),
        "person_label_acc": decided_ok / matched if votes and matched else float("nan"),
        "undecided": undecided / matched if votes and matched else float("nan"),
        "people": len(votes),
    }


PATHS = {  # the people section of each measured path
    "every frame": {"enabled": False},
    "people, all frames": {"detect_every": 1, "detect_every_max": 1, "undecided_every": 1, "decided_every": 1},
    "people, pan only": {"camera_zoom": False},
    "people": {},
}


def run_crowd(counts: list[int], frames: int, backends: list[str], size=(1280, 720), seed: int = 0) -> list[dict]:
    """Measure every (face count, backend, path); returns one row dict per run."""
    from stream.config import load_config
    from stream.people import PeopleStage
    from stream.pipeline import Pipeline, create_detector
    from stream.processor import Processor, create_backend
    from stream.sinks import EventsSink, VideoSink
    from stream.sources import SourceOptions, open_source

    tmp = Path(tempfile.mkdtemp(prefix="bench_people_"))
    rows = []
    for n in counts:
        faces, labels = _faces(n, seed)
        from tools.face_clip import write_face_clip

        clip = tmp / f"crowd{n}.mp4"
        truth = write_face_clip(clip, faces, labels, size, frames, 25.0, seed=seed)
        for bk in backends:
            for path in PATHS:
                cfg = load_config(None, {"worker": {"mode": "faces", "backend": bk, "batch_size": 4},
                                         "people": PATHS[path]})
                backend = create_backend(cfg.worker)
                on = cfg.people.enabled
                det = create_detector(None, {"score_threshold": cfg.people.tracker.low_score} if on else None)
                stage = PeopleStage(backend.meta.class_names, cfg.people, None) if on else None
                proc = Processor(backend, cfg.worker, det, stage)
                src = open_source(str(clip), source_id="file", options=SourceOptions(file_queue=16))
                sinks = [EventsSink(tmp / "ev.jsonl"), VideoSink(tmp / "out.mp4", ["file"], {"file": 25.0})]
                pipe = Pipeline([src], proc.process, sinks=sinks, batch_size=4, batch_timeout_s=0.02,
                                class_names=proc.class_names)
                from stream.overlay import build_annotators

                pipe.annotators = build_annotators(cfg.overlay, pipe.summary.monitor)
                pipe.people = stage
                stamps, records = [], []

                def on_result(r, lat, stamps=stamps, records=records):
                    stamps.append(time.monotonic())
                    records.append((r.frame.index, [
                        (d.box, d.label, getattr(d, "track_id", None),
                         (getattr(d, "data", None) or {}).get("person_label")) for d in r.detections]))

                pipe.on_result = on_result
                s = pipe.run()
                fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
                row = {"faces": n, "backend": bk, "path": path, "fps": fps, "frames": s.frames_out,
                       **score(records, truth)}
                if stage is not None:
                    row["people_truth"] = truth.people
                rows.append(row)
                print(f"  done {n} faces {bk} {path}: {fps:.1f} FPS", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    head = ("faces", "backend", "path", "FPS", "vs every frame", "frames", "frame acc", "recall",
            "person acc", "undecided boxes", "people / truth")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    base = {(r["faces"], r["backend"]): r["fps"] for r in rows if r["path"] == "every frame"}
    for r in rows:
        ratio = r["fps"] / base.get((r["faces"], r["backend"]), np.nan)
        ppl = f"{r['people']} / {r['people_truth']}" if "people_truth" in r else "-"
        pa = f"{r['person_acc']:.3f}" if "people_truth" in r else "-"
        und = f"{r['undecided']:.3f}" if "people_truth" in r else "-"
        print(f"{r['faces']} | {r['backend']} | {r['path']} | {r['fps']:.1f} | {ratio:.2f}x | {r['frames']} | "
              f"{r['frame_acc']:.3f} | {r['recall']:.3f} | {pa} | {und} | {ppl}")
