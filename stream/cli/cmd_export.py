"""``maskstream export``: a checkpoint as an ONNX file for onnxruntime / TensorRT."""
from __future__ import annotations

import argparse
import logging

from stream.errors import UserError

NAME = "export"
HELP = "export a checkpoint to ONNX (dynamic batch; outputs logits + last-conv activations)"
DESCRIPTION = (
    "Export a maskstream checkpoint to ONNX: input 'input' (B,3,S,S) normalised RGB with a dynamic "
    "batch, outputs 'logits' (B,K) and 'activations' (B,C,h,w), so every map method runs downstream. "
    "Metadata (class names, input size, mean/std, backbone) is in metadata_props; the head weights are "
    "the initializers 'head_weight' (K,C) and 'head_bias' (K,)."
)
ORDER = 60

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``maskstream export``."""
    parser.add_argument("--checkpoint", default=None, help="maskstream checkpoint (default: the shipped model)")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--fp16", action="store_true", help="float16 graph (for the CUDA provider)")
    parser.add_argument("--maps", default="", help="comma-separated in-graph map outputs: gradcam,gradcam++,"
                        "layercam,haycam+ (haycam+ adds its Gram matrix; the eigh stays outside)")
    parser.add_argument("--no-verify", action="store_true", help="skip running the export once with onnxruntime")


def run(args: argparse.Namespace) -> int:
    """Export, check with onnx.checker (inside ``export_onnx``), verify against torch, print a summary."""
    import torch

    from core.checkpoint import load_checkpoint
    from core.onnx_export import export_onnx, read_onnx_info

    maps = tuple(m.strip() for m in args.maps.split(",") if m.strip())
    if not str(args.out).endswith(".onnx"):
        raise UserError(f"--out {args.out}: the output file must end in .onnx")
    ck = load_checkpoint(args.checkpoint)
    try:
        path = export_onnx(ck.model, args.out, meta=ck.meta, opset=args.opset, maps=maps, fp16=args.fp16,
                           extra_props={"maskstream.source": ck.path.name if ck.path else ""})
    except ValueError as exc:
        raise UserError(f"export of {ck.path}: {exc}") from None
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write ({exc})") from None
    info = read_onnx_info(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): opset {info.opset}, {info.meta.backbone}, "
          f"classes {list(info.meta.class_names)}, input {info.meta.input_size}px, "
          f"{'fp16' if info.fp16 else 'fp32'}, outputs {list(info.outputs)}")
    if not args.no_verify:
        import numpy as np
        import onnxruntime as ort

        s = info.meta.input_size
        x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        dt = np.float16 if info.fp16 else np.float32
        logits, acts = sess.run(["logits", "activations"], {"input": x.numpy().astype(dt)})
        with torch.no_grad():
            ref_l, ref_a = ck.model(x)
        dl = float(np.abs(logits.astype(np.float32) - ref_l.numpy()).max())
        da = float(np.abs(acts.astype(np.float32) - ref_a.numpy()).max()) / max(float(ref_a.abs().max()), 1e-12)
        print(f"verified with onnxruntime (CPU, batch 2): max |logits diff| {dl:.2e}, "
              f"max |activations diff| / max|activations| {da:.2e}")
    return 0
