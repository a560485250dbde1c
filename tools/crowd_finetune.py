"""Fine-tune the classifier for the ``crowd`` preset on crops cut as its worker cuts them (issue 18; docs/CROWD.md).

Training rows (TRAIN side of THE split only):
- every two-class face the crowd preset's detector found on a train photo (``tools.crowd_eval --split train
  --configs crowd`` events: each photo's name and detector box), matched to its annotated face (IoU >= 0.3, one to
  one, as crowd_eval; ``tools.crop_sweep.matched_faces``) for its label, cut as the worker cuts it
  (``core.data.worker_crops``: the box + ``--margin`` per side, stretched to the model input): ``--views`` views,
  the first clean, the others mildly augmented (framing kept: scale 0.9-1.1, shift 5%);
- mixed with ``--originals`` images drawn from the shipped model's own training set (``core.training.train``'s
  cached set with the shipped recipe's data spec, one augmented view each, the shipped augmentation), so that
  the faces it already labels right are not forgotten.

Model: the shipped checkpoint; ``features[:--tail-from]`` stays as shipped (its outputs computed once per view,
``core.training.train_features``), ``features[--tail-from:]`` + the classifier train (``core.training.train.fit``,
AdamW, cosine schedule, class-balanced cross-entropy with label smoothing; BatchNorm statistics kept as shipped)
for ``--epochs`` epochs; no epoch is chosen on held-out data (the last, i.e. lowest-train-loss, state).

Evaluation (never the test side):
- ``--folds K``: grouped K-fold cross-validation over the train photos (duplicate groups of
  ``core.data.voc.read_duplicate_groups`` kept together): the fine-tune is repeated without the held-out fold's
  photos (their found faces and their original images) and labels the held-out found faces. Caveat: the shipped
  model was trained on every train photo, the held-out folds included, so both columns are optimistic; the
  comparison is between two models that both saw those faces.
- the VAL side's found faces (``--val-events``, the crowd preset's val run) and the shipped model's own val sets
  (crops / VOC faces / VOC context windows: "nothing forgotten"), with the model trained on all train rows.

    nice python -m tools.crowd_eval --split train --configs crowd --out out/train_crowd
    nice python -m tools.crowd_eval --split val --configs crowd --out out/val_crowd
    nice python -m tools.crowd_finetune --train-events out/train_crowd/events-crowd.jsonl \\
        --val-events out/val_crowd/events-crowd.jsonl --out out/crowd_ft \\
        [--export core/assets/maskstream_mobilenet_v2_crowd.pt]

``--export`` writes the model trained on all train rows as a float16 checkpoint (like the shipped one); fit its
map box thresholds afterwards as ``make train`` does (``maskstream eval --calibrate``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data.worker_crops import worker_input_image  # noqa: E402
from tools.crop_sweep import matched_faces, wrong_by_size  # noqa: E402
from tools.crowd_eval import SIZES, face_size, size_name  # noqa: E402
from tools.detector_recall import DEFAULT_DATA  # noqa: E402

log = logging.getLogger("maskstream.crowd_finetune")
CLASSES = ("with_mask", "without_mask")  # core.data.training_set.CLASS_NAMES
MARGIN = 0.3  # configs/crowd.yaml worker.face_margin


@dataclass
class FoundSet:
    """Faces a detector found and the annotation they matched, as the worker's classifier input.

    Attributes:
        images: (N, 3, S, S) float32 RGB in [0, 1], :func:`core.data.worker_crops.worker_input_image` of each
            detector box (the worker's model input before normalisation).
        labels: (N,) int64 index into ``CLASSES`` (the annotated face's label).
        files: (N,) photo file of each face (relative to the data folder).
        sizes: (N,) size name of the ANNOTATED face (``tools.crowd_eval.SIZES``), as crowd_eval counts.
        det_px: (N,) float64 sqrt of the detector box's area.
    """

    images: np.ndarray
    labels: np.ndarray
    files: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    det_px: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "FoundSet":
        idx = np.flatnonzero(mask)
        return FoundSet(self.images[idx], self.labels[idx], [self.files[i] for i in idx],
                        [self.sizes[i] for i in idx], None if self.det_px is None else self.det_px[idx])


def build_found_set(data: Path, split: str, events: Path, margin: float = MARGIN, size: int = 224) -> FoundSet:
    """The found two-class faces of a crowd_eval run (``events``) on ``split``'s photos, cut as the worker cuts
    them with ``margin``; a face whose crop the worker would drop is left out (with a log line)."""
    faces = matched_faces(data, split, events)
    imgs, labels, files, sizes, det = [], [], [], [], []
    cache: dict[str, np.ndarray] = {}
    for f, box, label, ann in faces:
        if f not in cache:
            cache.clear()  # events are grouped by photo in annotation order: keep one photo decoded
            img = cv2.imread(str(data / f))
            if img is None:
                raise SystemExit(f"{data / f}: cannot be read as an image")
            cache[f] = img
        x = worker_input_image(cache[f], box, margin, size)
        if x is None:
            log.info("%s: box %s dropped by the worker's crop (under 2 px)", f, box)
            continue
        imgs.append(x)
        labels.append(CLASSES.index(label))
        files.append(f)
        sizes.append(size_name(ann))
        det.append(face_size(box))
    images = np.stack(imgs) if imgs else np.zeros((0, 3, size, size), np.float32)
    return FoundSet(images, np.array(labels, np.int64), files, sizes, np.array(det, np.float64))


def photo_folds(files: list[str], groups: dict[str, int], k: int) -> dict[str, int]:
    """Photo file -> fold in 0..k-1: grouped K-fold over the distinct photos (``sklearn.model_selection.GroupKFold``),
    a duplicate group (``groups``: file -> group id; a file missing from it is its own group) never split."""
    from sklearn.model_selection import GroupKFold

    photos = sorted(set(files))
    if len(photos) < k:
        raise SystemExit(f"--folds {k}: only {len(photos)} photos")
    keys = [f"group:{groups[p]}" if p in groups else f"file:{p}" for p in photos]
    out = {}
    for fold, (_, te) in enumerate(GroupKFold(k).split(np.zeros(len(photos)), groups=keys)):
        for i in te:
            out[photos[i]] = fold
    return out


def count(pred: np.ndarray, truth: np.ndarray, sizes: list[str]) -> dict:
    """Wrong (all and per size name of ``tools.crowd_eval.SIZES``), without_mask right / total, with_mask right /
    total, for class indices ``pred`` and ``truth`` (n,)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    by_size = wrong_by_size(pred, truth, sizes)
    out = {"n": int(len(truth)), "wrong": by_size["all"][0]}
    for name, _, _ in SIZES:
        out[f"wrong {name}"] = by_size[name][0]
    out["unmasked right"] = int(((pred == 1) & (truth == 1)).sum())
    out["unmasked"] = int((truth == 1).sum())
    out["masked right"] = int(((pred == 0) & (truth == 0)).sum())
    out["masked"] = int((truth == 0).sum())
    return out


def fmt(c: dict) -> str:
    per = "/".join(str(c[f"wrong {n}"]) for n, _, _ in SIZES)
    return (f"{c['wrong']} wrong of {c['n']} ({per} by size); unmasked {c['unmasked right']}/{c['unmasked']}, "
            f"masked {c['masked right']}/{c['masked']}")


# ------------------------------------------------------------------------------------------------ training


FOUND_AUG = dict(scale=(0.9, 1.1), translate=0.05)  # the worker's framing is the point: keep it roughly


def _features(runner, images: np.ndarray, meta, aug, seed: int, batch: int, desc: str) -> np.ndarray:
    """(N, C, h, w) float16 prefix features of ``images`` (augmented when ``aug``): (N, S, S, 3) uint8 BGR (the
    training sets, through ``core.training.train_input._to_input``) or (N, 3, S, S) float32 RGB in [0, 1]
    (:class:`FoundSet`, normalised as the worker does; augmented by the same ``augment_rgb01``)."""
    import torch

    from core.data.augment import augment_rgb01
    from core.preprocess import normalize
    from core.training.train_features import extract
    from core.training.train_input import _to_input

    g = torch.Generator().manual_seed(seed)
    if images.dtype == np.uint8:
        return extract(runner, len(images), lambda i: _to_input(torch.from_numpy(images[i]), meta, aug, g), batch,
                       desc)

    def rgb01(i):
        x = torch.from_numpy(images[i])
        return normalize(x if aug is None else augment_rgb01(x.clone(), aug, g, out_size=meta.input_size), meta.mean,
                         meta.std)
    return extract(runner, len(images), rgb01, batch, desc)


def train_tail(net, tail_from: int, feats: np.ndarray, labels: np.ndarray, args, out: Path):
    """A copy of ``net`` whose ``features[tail_from:]`` + classifier were trained on prefix features ``feats``
    (N, C, h, w) with ``labels`` (N,) by ``core.training.train.fit``; BatchNorm statistics kept."""
    import torch
    from torch import nn

    from core.data.training_set import LabeledSet
    from core.training.train import _Tail, fit

    net = copy.deepcopy(net)
    tail = _Tail(net, tail_from)
    bns = [m for m in tail.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    ft = torch.from_numpy(feats)
    ns = argparse.Namespace(batch_size=args.batch_size, epochs=args.epochs, lr=args.lr, weight_decay=1e-4,
                            label_smoothing=0.05, warmup_epochs=0.3, seed=args.seed, resume=None, time_budget=None,
                            out=out, _fingerprint="crowd_finetune", mode="tail", output_stride=32, extent_loss=0.0,
                            _augment={})
    empty = LabeledSet(np.zeros((0, 2, 2, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), [])

    def keep_bn(epoch: int) -> None:
        for m in bns:
            m.eval()

    best, _, history = fit(tail, lambda idx, epoch, g: ft[idx].float(), len(ft), labels, lambda: None, empty, ns,
                           torch.device("cpu"), [p for p in tail.parameters()], keep_bn)
    tail.load_state_dict(best)
    return net.eval(), history


def tail_logits(net, tail_from: int, feats: np.ndarray, batch: int = 128) -> np.ndarray:
    """(N, K) float32 logits of ``net``'s tail on prefix features ``feats`` (N, C, h, w)."""
    import torch

    from core.training.train import _Tail

    tail = _Tail(net, tail_from).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(feats), batch):
            out.append(tail(torch.from_numpy(feats[s:s + batch]).float()).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def originals(args, shipped_extra: dict):
    """(train, val) :class:`core.data.training_set.LabeledSet` of the shipped model's own recipe (the data spec
    stored in the shipped checkpoint's ``extra``), from the training cache when present."""
    from core.data.training_set import DataSpec, fingerprint
    from core.training.train import _cached_set

    stored = dict(shipped_extra["data_spec"])
    spec = DataSpec(str(args.data), str(args.crops), **stored)
    fp = fingerprint(spec)
    ns = argparse.Namespace(cache_dir=args.cache_dir, no_cache=False, workers=2, extent_loss=0.0)
    return _cached_set(spec, "train", fp, ns), _cached_set(spec, "val", fp, ns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="facemask_voc folder (annotations.json + images/)")
    p.add_argument("--crops", type=Path, default=DEFAULT_DATA.parent / "facemask_crops", help="facemask_crops folder")
    p.add_argument("--train-events", type=Path, required=True, help="events of `crowd_eval --split train --configs crowd`")
    p.add_argument("--val-events", type=Path, required=True, help="events of `crowd_eval --split val --configs crowd`")
    p.add_argument("--margin", type=float, default=MARGIN, help="the worker's face_margin (the crowd preset's: 0.3)")
    p.add_argument("--folds", type=int, default=2, help="grouped CV folds over the train photos (0: none)")
    p.add_argument("--tail-from", type=int, default=17, help="first trained block of mobilenet_v2.features")
    p.add_argument("--views", type=int, default=2, help="views per found face (the first clean)")
    p.add_argument("--originals", type=int, default=4000, help="images drawn from the shipped training set")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "maskstream",
                   help="where the shipped recipe's decoded training set is cached (core.training.train)")
    p.add_argument("--out", type=Path, default=Path("out/crowd_ft"), help="folder for the report (report.json)")
    p.add_argument("--export", type=Path, default=None, help="write the model trained on all train rows here (float16)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for ev in (args.train_events, args.val_events):
        if not ev.is_file():
            p.error(f"{ev}: no such events file")
    if not (args.data / "annotations.json").is_file():
        p.error(f"{args.data / 'annotations.json'} not found (pass --data)")
    if not 1 <= args.tail_from <= 18:
        p.error(f"--tail-from {args.tail_from}: must be in 1..18 (mobilenet_v2.features)")
    if not 0.0 <= args.margin <= 1.0:
        p.error(f"--margin {args.margin}: must be in [0, 1]")
    import torch

    from core.checkpoint import load_checkpoint, save_checkpoint
    from core.data.augment import AugmentConfig
    from core.data.voc import read_duplicate_groups
    from core.model import CamModel
    from core.training.train_features import make_runner
    from core.training.train_metrics import domain_metrics

    t0 = time.time()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint()
    net, meta = ck.model.net.float().eval(), ck.meta
    S = meta.input_size
    found = build_found_set(args.data, "train", args.train_events, args.margin, S)
    found_val = build_found_set(args.data, "val", args.val_events, args.margin, S)
    orig, orig_val = originals(args, ck.extra)
    log.info("found faces: train %d, val %d; originals: train %d, val %d (%.0f s)", len(found), len(found_val),
             len(orig), len(orig_val), time.time() - t0)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(orig), min(args.originals, len(orig)), replace=False))

    runner = make_runner(net.features[:args.tail_from], S, torch.device("cpu"), torch.get_num_threads())
    aug_found, aug_orig = AugmentConfig(**FOUND_AUG), AugmentConfig()
    bs = 64
    f_found = [_features(runner, found.images, meta, None if v == 0 else aug_found, args.seed + v, bs,
                         f"found view {v + 1}/{args.views}") for v in range(args.views)]
    f_orig = _features(runner, orig.images[pick], meta, aug_orig, args.seed + 100, bs, "originals")
    f_val = _features(runner, found_val.images, meta, None, 0, bs, "val found")
    f_oval = _features(runner, orig_val.images, meta, None, 0, bs, "val originals")
    log.info("prefix features done (%.0f s)", time.time() - t0)
    orig_files = [orig.files[i] for i in pick]
    y_orig = orig.labels[pick]

    def rows(keep_found: np.ndarray, keep_orig: np.ndarray):
        x = np.concatenate([f[keep_found] for f in f_found] + [f_orig[keep_orig]])
        y = np.concatenate([found.labels[keep_found]] * args.views + [y_orig[keep_orig]])
        return x, y

    report: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "n": {"found_train": len(found), "found_val": len(found_val), "originals": len(pick)}}
    pred0 = tail_logits(net, args.tail_from, f_found[0]).argmax(1)
    report["train_shipped"] = count(pred0, found.labels, found.sizes)
    print(f"train found faces, shipped model: {fmt(report['train_shipped'])}", flush=True)
    if args.folds:
        fold_of = photo_folds(found.files, read_duplicate_groups(args.data), args.folds)
        ff = np.array([fold_of[f] for f in found.files])
        fo = np.array([fold_of.get(f, -1) for f in orig_files])  # crops and photos without found faces: -1
        pred = np.full(len(found), -1)
        for k in range(args.folds):
            x, y = rows(ff != k, fo != k)
            log.info("fold %d/%d: %d training rows", k + 1, args.folds, len(y))
            tuned, _ = train_tail(net, args.tail_from, x, y, args, args.out / f"fold{k}")
            pred[ff == k] = tail_logits(tuned, args.tail_from, f_found[0][ff == k]).argmax(1)
            c = count(pred[ff == k], found.labels[ff == k], [s for s, m in zip(found.sizes, ff == k) if m])
            c0 = count(pred0[ff == k], found.labels[ff == k], [s for s, m in zip(found.sizes, ff == k) if m])
            print(f"  fold {k + 1}: shipped {fmt(c0)} | fine-tuned {fmt(c)} ({time.time() - t0:.0f} s)", flush=True)
        report["cv_tuned"] = count(pred, found.labels, found.sizes)
        print(f"CV ({args.folds} folds, grouped by photo), train found faces: shipped {fmt(report['train_shipped'])}"
              f" | fine-tuned {fmt(report['cv_tuned'])}", flush=True)
    x, y = rows(np.ones(len(found), bool), np.ones(len(pick), bool))
    tuned, history = train_tail(net, args.tail_from, x, y, args, args.out / "all")
    report["history"] = history
    for name, model in (("shipped", net), ("tuned", tuned)):
        report[f"val_{name}"] = count(tail_logits(model, args.tail_from, f_val).argmax(1), found_val.labels,
                                      found_val.sizes)
        report[f"val_originals_{name}"] = domain_metrics(tail_logits(model, args.tail_from, f_oval), orig_val.labels,
                                                         orig_val.domains)
    for name in ("shipped", "tuned"):
        m = report[f"val_originals_{name}"]
        acc = ", ".join(f"{d} {m[d]['accuracy']:.4f}" for d in ("crops", "voc_face", "voc_context"))
        print(f"val, {name}: found faces {fmt(report[f'val_{name}'])}; the classifier's own val sets: score "
              f"{m['score']:.4f} ({acc})", flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    if args.export is not None:
        model = CamModel(tuned.cpu(), meta).eval()
        extra = {"base": "core/assets/maskstream_mobilenet_v2.pt", "command": " ".join(sys.argv),
                 "recipe": report["args"], "history": history, "torch": str(torch.__version__),
                 "train_seconds": report["seconds"], "n": report["n"]}
        metrics = {"val": report["val_originals_tuned"], "val_found_crowd": report["val_tuned"],
                   **({"cv_found_crowd": report["cv_tuned"]} if "cv_tuned" in report else {})}
        save_checkpoint(args.export, model, meta, metrics=metrics, data_fingerprint=ck.data_fingerprint,
                        extra=extra, half=True)
        print(f"wrote {args.export} (float16); fit its map box thresholds with `maskstream eval --calibrate`")
    print(f"done in {time.time() - t0:.0f} s; report {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
