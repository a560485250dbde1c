"""Frozen-prefix features for the CPU "tail" mode: the ImageNet prefix runs once, the tail trains.

On a 2-core CPU a full MobileNetV2 training step runs at a few images per second. With the
prefix ``features[:tail_from]`` frozen at ImageNet weights, its outputs for a fixed number of
augmented views of each image are computed once (with onnxruntime when installed: about 10x
faster than eager torch on CPU) and the tail ``features[tail_from:]`` + classifier trains on them.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)


def _torch_runner(prefix: nn.Module, device: torch.device) -> Callable[[torch.Tensor], np.ndarray]:
    prefix = prefix.to(device).eval()
    if device.type == "cpu":
        prefix = prefix.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return prefix(x.to(device)).float().cpu().numpy()
    return run


def _ort_runner(prefix: nn.Module, size: int, threads: int) -> Callable[[torch.Tensor], np.ndarray] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    tmp = Path(tempfile.mkdtemp(prefix="maskstream-prefix-")) / "prefix.onnx"
    with torch.no_grad():
        torch.onnx.export(prefix.eval().cpu(), torch.zeros(1, 3, size, size), str(tmp), input_names=["x"],
                          output_names=["f"], dynamic_axes={"x": {0: "b"}, "f": {0: "b"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x.float().numpy()})[0]


def make_runner(prefix: nn.Module, size: int, device: torch.device, threads: int, use_ort: bool = True):
    """A function ``(B, 3, S, S) normalised input -> (B, C, h, w) float32 numpy`` features."""
    if use_ort and device.type == "cpu":
        r = _ort_runner(prefix, size, threads)
        if r is not None:
            log.info("prefix features: onnxruntime (CPU, %d threads)", threads)
            return r
    log.info("prefix features: torch on %s", device)
    return _torch_runner(prefix, device)


def extract(runner, n: int, make_batch: Callable[[np.ndarray], torch.Tensor], batch_size: int, desc: str) -> np.ndarray:
    """Run ``runner`` over items ``0..n-1`` in batches; returns (n, C, h, w) float16."""
    out = None
    for s in tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False):
        idx = np.arange(s, min(n, s + batch_size))
        f = runner(make_batch(idx))
        if out is None:
            out = np.empty((n, *f.shape[1:]), np.float16)
        out[idx] = f
    return out if out is not None else np.zeros((0,), np.float16)
