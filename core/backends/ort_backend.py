"""The ``onnxruntime`` backend: TensorRT / CUDA / CPU execution providers, IO binding on CUDA.

Providers: ``device="cuda"`` asks for ``CUDAExecutionProvider`` (then CPU);
``tensorrt=True`` or an explicit ``providers=[...]`` list adds ``TensorrtExecutionProvider``
(not by default: building a TensorRT engine takes minutes the first time; engines are cached
under ``<cache_dir>/trt``). A requested provider that onnxruntime cannot load (missing
libcuda, cuDNN, TensorRT...) is dropped with a ``RuntimeWarning`` that names it; the
session then runs on the next one, ultimately the CPU.

Inputs and outputs are torch tensors bound to the session with IO binding, so on CUDA
they stay on the GPU (no host copy); on CPU the same path avoids numpy copies. ORT runs on its own CUDA stream; the backend
synchronises torch's current stream before each run (inputs ready) and onnxruntime
synchronises its stream at the end of the run (outputs ready).

fp16: on CUDA the float16 graph from ``core.onnx_export`` is used (input and outputs
float16, converted offline by ``onnxruntime.transformers.float16``); with TensorRT the
float32 graph is given to TensorRT with ``trt_fp16_enable``. On CPU fp16 is refused with
a warning (float32).
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.onnx_export import INPUT_NAME, OnnxInfo, read_onnx_info

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
GRAPH_OPT = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")
_NP = {torch.float32: np.float32, torch.float16: np.float16}


def _session_options(ort: Any, threads: int, inter_threads: int, graph_opt: str, execution_mode: str):
    if graph_opt not in GRAPH_OPT:
        raise ValueError(f"graph_opt must be one of {list(GRAPH_OPT)}, but got {graph_opt!r}")
    if execution_mode not in EXECUTION_MODES:
        raise ValueError(f"execution_mode must be one of {list(EXECUTION_MODES)}, but got {execution_mode!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_opt]
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if execution_mode == "sequential"
                         else ort.ExecutionMode.ORT_PARALLEL)
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = int(inter_threads)
    return so


def _preload_cuda_dlls(ort: Any) -> bool:
    """Load CUDA/cuDNN from the nvidia-* wheels (``onnxruntime.preload_dlls``); True when it ran.

    Importing torch first normally loads compatible libraries already (torch 2.14+cu130 and
    onnxruntime-gpu 1.31 both target CUDA 13 / cuDNN 9); this is the fallback when it did not.
    """
    if not torch.cuda.is_available() or not hasattr(ort, "preload_dlls"):
        return False
    try:
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
        return True
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - depends on the machine
        log.warning("onnxruntime.preload_dlls failed: %s", exc)
        return False


class OrtBackend:
    """Run a maskstream ONNX export with onnxruntime.

    Args:
        onnx_path: float32 export (``core.onnx_export.export_onnx``).
        device: resolved device (cuda asks for the CUDA provider).
        fp16_path: float16 export to use on CUDA (None: run float32).
        providers: explicit provider names, in priority order (CPU is always appended).
        tensorrt: put TensorRT first (with ``trt_fp16_enable`` when ``fp16_path`` is given).
        threads: intra-op threads (0 = onnxruntime's default, one per physical core).
        inter_threads: inter-op threads (parallel mode only).
        graph_opt: ``disable|basic|extended|all``.
        execution_mode: ``sequential|parallel``.
        provider_options: extra options per provider name, e.g. ``{"CUDAExecutionProvider": {"use_tf32": "0"}}``.
        io_binding: bind torch tensors as the session's input and outputs (default True): no
            host copy on CUDA, no numpy allocation on CPU.
        cache_dir: where TensorRT engines are cached.
        trt_max_batch: largest batch the TensorRT optimisation profile covers.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        device: torch.device,
        *,
        fp16_path: str | os.PathLike | None = None,
        providers: Sequence[str] | None = None,
        tensorrt: bool = False,
        threads: int = 0,
        inter_threads: int = 0,
        graph_opt: str = "all",
        execution_mode: str = "sequential",
        provider_options: dict[str, dict[str, Any]] | None = None,
        io_binding: bool = True,
        cache_dir: str | os.PathLike | None = None,
        trt_max_batch: int = 128,
    ) -> None:
        import onnxruntime as ort  # after torch: reuses torch's CUDA/cuDNN libraries when they match

        self._ort = ort
        self.onnx_path = Path(onnx_path)
        info32 = read_onnx_info(self.onnx_path)
        self.meta = info32.meta
        wanted = self._wanted(device, providers, tensorrt)
        so = _session_options(ort, threads, inter_threads, graph_opt, execution_mode)
        popts = {k: dict(v) for k, v in (provider_options or {}).items()}
        if device.type == "cuda":
            popts.setdefault(CUDA_EP, {}).setdefault("device_id", str(device.index or 0))
        use_trt = TRT_EP in wanted
        if use_trt:
            size = self.meta.input_size
            trt = popts.setdefault(TRT_EP, {})
            trt.setdefault("device_id", str(device.index or 0))
            trt.setdefault("trt_fp16_enable", "True" if fp16_path is not None else "False")
            trt.setdefault("trt_engine_cache_enable", "True")
            trt.setdefault("trt_engine_cache_path", str(Path(cache_dir or self.onnx_path.parent) / "trt"))
            trt.setdefault("trt_profile_min_shapes", f"{INPUT_NAME}:1x3x{size}x{size}")
            trt.setdefault("trt_profile_opt_shapes", f"{INPUT_NAME}:{min(32, trt_max_batch)}x3x{size}x{size}")
            trt.setdefault("trt_profile_max_shapes", f"{INPUT_NAME}:{trt_max_batch}x3x{size}x{size}")

        # TensorRT does its own fp16 from the fp32 graph; the CUDA EP needs the fp16 graph.
        path = self.onnx_path if (fp16_path is None or use_trt) else Path(fp16_path)
        sess = self._session(path, so, wanted, popts)
        active = sess.get_providers()
        if CUDA_EP in wanted and CUDA_EP not in active and _preload_cuda_dlls(ort):
            sess = self._session(path, so, wanted, popts)  # retry with the nvidia-* wheel libraries loaded
            active = sess.get_providers()
        for p in wanted:
            if p not in active:
                warnings.warn(
                    f"onnxruntime: {p} is not available on this machine (onnxruntime "
                    f"{ort.__version__}, available here: {active}); falling back to {active[0]}",
                    RuntimeWarning, stacklevel=3)
        on_gpu = active[0] in (CUDA_EP, TRT_EP)
        if path != self.onnx_path and not on_gpu:
            warnings.warn("onnxruntime: fp16 needs the CUDA provider; running the float32 graph on "
                          f"{active[0]}", RuntimeWarning, stacklevel=3)
            path = self.onnx_path
            sess = self._session(path, so, [CPU_EP], popts)
            active = sess.get_providers()
        self.session = sess
        self.providers = tuple(active)
        info = info32 if path == self.onnx_path else read_onnx_info(path)
        self.info: OnnxInfo = info
        self.dtype = torch.float16 if info.fp16 else torch.float32
        self.device = device if (on_gpu and device.type == "cuda" and torch.cuda.is_available()) else torch.device("cpu")
        self.io_binding = bool(io_binding)
        self.output_names = tuple(o.name for o in sess.get_outputs())
        self._out_shapes = {o.name: tuple(o.shape[1:]) for o in sess.get_outputs()}
        self._out_dtypes = {o.name: torch.float16 if o.type == "tensor(float16)" else torch.float32
                            for o in sess.get_outputs()}
        for name, shape in self._out_shapes.items():
            if not all(isinstance(d, int) for d in shape):
                raise ValueError(f"ONNX model {path}: output {name!r} needs static non-batch dims, got {shape}")
        w, b = info32.head_weight, info32.head_bias
        self._head = (torch.from_numpy(w.copy()).to(self.device), torch.from_numpy(b.copy()).to(self.device))
        precision = "fp16" if (info.fp16 or (active[0] == TRT_EP and fp16_path is not None)) else "fp32"
        self.name = f"onnxruntime[{active[0]},{precision}]"
        log.info("onnxruntime session on %s (%s), providers %s", self.device, path.name, list(active))

    @staticmethod
    def _wanted(device: torch.device, providers: Sequence[str] | None, tensorrt: bool) -> list[str]:
        if providers:
            wanted = [str(p) for p in providers]
        elif device.type == "cuda":
            wanted = [CUDA_EP]
        else:
            wanted = []
        if tensorrt and TRT_EP not in wanted:
            wanted.insert(0, TRT_EP)
        if device.type == "cuda" and CUDA_EP not in wanted:
            wanted.append(CUDA_EP)  # TensorRT falls back to CUDA before the CPU
        if CPU_EP not in wanted:
            wanted.append(CPU_EP)
        return wanted

    def _session(self, path: Path, so: Any, wanted: Sequence[str], popts: dict) -> Any:
        ort = self._ort
        known = set(ort.get_available_providers())
        for p in wanted:
            if p not in known:
                warnings.warn(f"onnxruntime: {p} is not built into onnxruntime {ort.__version__} "
                              f"(built-in: {sorted(known)}); skipping it", RuntimeWarning, stacklevel=4)
        provs = [(p, popts.get(p, {})) for p in wanted if p in known]
        return ort.InferenceSession(str(path), so, providers=[p for p, _ in provs],
                                    provider_options=[o for _, o in provs])

    def run(self, images: Tensor, outputs: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Run the graph on a batch.

        Args:
            images: (B, 3, S, S) normalised images (moved to ``device``/``dtype`` if needed).
            outputs: output names (default: all).

        Returns:
            name -> torch tensor on ``device`` (the graph's dtype).
        """
        names = tuple(outputs) if outputs is not None else self.output_names
        x = images.detach().to(device=self.device, dtype=self.dtype).contiguous()
        b = int(x.shape[0])
        unknown = [n for n in names if n not in self._out_shapes]
        if unknown:
            raise ValueError(f"ONNX model {self.onnx_path}: no output {unknown[0]!r}; outputs: {list(self.output_names)}")
        if b == 0:
            return {n: torch.empty((0, *self._out_shapes[n]), dtype=self._out_dtypes[n], device=self.device)
                    for n in names}
        if not self.io_binding:
            arrs = self.session.run(list(names), {INPUT_NAME: x.cpu().numpy()})
            return {n: torch.from_numpy(a) for n, a in zip(names, arrs)}
        cuda = self.device.type == "cuda"
        idx = (self.device.index if self.device.index is not None else torch.cuda.current_device()) if cuda else 0
        kind = "cuda" if cuda else "cpu"
        io = self.session.io_binding()
        io.bind_input(INPUT_NAME, kind, idx, _NP[self.dtype], tuple(x.shape), x.data_ptr())
        out: dict[str, Tensor] = {}
        for n in names:
            t = torch.empty((b, *self._out_shapes[n]), dtype=self._out_dtypes[n], device=self.device)
            io.bind_output(n, kind, idx, _NP[t.dtype], tuple(t.shape), t.data_ptr())
            out[n] = t
        if cuda:
            torch.cuda.current_stream(self.device).synchronize()  # x is written before ORT's stream reads it
        self.session.run_with_iobinding(io)  # synchronises ORT's stream at the end of the run
        io.synchronize_outputs()
        return out

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) normalised images -> (logits (B, K), activations (B, C, h, w)) on ``device``."""
        out = self.run(images, ("logits", "activations"))
        return out["logits"], out["activations"]

    __call__ = forward

    def head_weights(self) -> tuple[Tensor, Tensor]:
        """``(W (K, C), b (K,))`` float32 on ``device``, read from the ONNX initializers."""
        return self._head

    def close(self) -> None:
        """Drop the session (frees its GPU memory)."""
        self.session = None
