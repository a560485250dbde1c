"""Run configuration: typed frozen dataclasses loaded from YAML and validated on load.

``configs/default.yaml`` documents the defaults (the dataclass defaults below are the same
values, so a missing ``configs/`` directory changes nothing); ``--config FILE`` overlays it,
then command-line options overlay both. Any unknown key, wrong type or out-of-range value
becomes ONE ``UserError`` naming the file and the dotted key, e.g.::

    config configs/x.yaml: worker.batch_size must be an int >= 1, got 0
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from stream.errors import UserError
from stream.sources.options import SourceOptions

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("torch", "onnxruntime")
MODES = ("frame", "faces")
THRESHOLD_MODES = ("calibrated", "fraction", "percentile", "otsu")
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "hot", "magma", "plasma")


class ConfigValueError(ValueError):
    """A bad value; ``key`` is the field name (the loader prefixes the section path)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigValueError(key, message)


_SOURCE_DEFAULTS = SourceOptions()  # one source of truth for the capture defaults


@dataclass(frozen=True)
class SourcesConfig:
    """Which sources to open and how; every field but ``specs`` is a ``stream.sources.SourceOptions`` field.

    Attributes:
        specs: source specs: a camera index ("0"), an rtsp/http URL, a video file or an
            image folder. Empty: the bundled sample clip.
        live_buffer: frames a live source keeps (drop-oldest beyond it: latency never grows).
        file_queue: frames a file source may read ahead (blocking: no frame is lost).
        reconnect_initial: first wait before reconnecting a live source, seconds.
        reconnect_max: cap of the exponential backoff, seconds.
        reconnect_jitter: random spread of each wait, in [0, 1).
        max_attempts: reconnect attempts before giving up (0: forever).
        open_timeout: network sources: seconds an open may take.
        read_timeout: network sources: a read blocked this long counts as disconnected.
        loop: restart file sources at their end (soak tests, demos).
        fps: file sources: deliver at most this many frames per second (None: as fast as processed).
        realtime: file sources: pace at the file's own frame rate (a live-like replay).
    """

    specs: tuple[str, ...] = ()
    live_buffer: int = _SOURCE_DEFAULTS.live_buffer
    file_queue: int = _SOURCE_DEFAULTS.file_queue
    reconnect_initial: float = _SOURCE_DEFAULTS.reconnect_initial
    reconnect_max: float = _SOURCE_DEFAULTS.reconnect_max
    reconnect_jitter: float = _SOURCE_DEFAULTS.reconnect_jitter
    max_attempts: int = _SOURCE_DEFAULTS.max_attempts
    open_timeout: float = _SOURCE_DEFAULTS.open_timeout
    read_timeout: float = _SOURCE_DEFAULTS.read_timeout
    loop: bool = _SOURCE_DEFAULTS.loop
    fps: float | None = _SOURCE_DEFAULTS.fps
    realtime: bool = _SOURCE_DEFAULTS.realtime

    def __post_init__(self) -> None:
        _check(all(s.strip() for s in self.specs), "specs", "must be non-empty strings")
        _check(self.live_buffer >= 1, "live_buffer", f"must be an int >= 1, got {self.live_buffer}")
        _check(self.file_queue >= 1, "file_queue", f"must be an int >= 1, got {self.file_queue}")
        _check(self.reconnect_initial > 0, "reconnect_initial", f"must be > 0 seconds, got {self.reconnect_initial}")
        _check(
            self.reconnect_max >= self.reconnect_initial,
            "reconnect_max",
            f"must be >= reconnect_initial ({self.reconnect_initial}), got {self.reconnect_max}",
        )
        _check(
            0.0 <= self.reconnect_jitter < 1.0, "reconnect_jitter", f"must be in [0, 1), got {self.reconnect_jitter}"
        )
        _check(self.max_attempts >= 0, "max_attempts", f"must be an int >= 0 (0: forever), got {self.max_attempts}")
        _check(self.open_timeout > 0, "open_timeout", f"must be > 0 seconds, got {self.open_timeout}")
        _check(self.read_timeout > 0, "read_timeout", f"must be > 0 seconds, got {self.read_timeout}")
        _check(self.fps is None or self.fps > 0, "fps", f"must be > 0 or null, got {self.fps}")

    def source_options(self) -> dict:
        """The ``SourceOptions`` keyword arguments (every field but ``specs``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "specs"}


@dataclass(frozen=True)
class ThresholdConfig:
    """How maps become boxes (see ``core.boxes.Threshold``).

    ``calibrated`` (the default) takes the mode and value the checkpoint stores for the worker's method
    (fitted on the val split by ``maskstream eval --calibrate``), so ``run`` draws the boxes ``explain``
    and ``eval`` report; ``value`` is then the fraction used when the checkpoint stores none (an ONNX
    file given alone, an uncalibrated checkpoint). ``min_area`` always comes from here: it drops
    specks in live frames.
    """

    mode: str = "calibrated"
    value: float = 0.5
    min_area: float = 0.01

    def __post_init__(self) -> None:
        _check(self.mode in THRESHOLD_MODES, "mode", f"must be one of {', '.join(THRESHOLD_MODES)}, got {self.mode!r}")
        if self.mode in ("fraction", "calibrated"):
            _check(0.0 <= self.value <= 1.0, "value", f"must be in [0, 1] for mode {self.mode}, got {self.value}")
        if self.mode == "percentile":
            _check(0.0 <= self.value <= 100.0, "value", f"must be in [0, 100] for mode percentile, got {self.value}")
        _check(0.0 <= self.min_area < 1.0, "min_area", f"must be in [0, 1), got {self.min_area}")

    def to_core(self):
        """The ``core.boxes.Threshold`` for this section (``calibrated`` unresolved: its fraction fallback)."""
        from core.boxes import Threshold

        mode = "fraction" if self.mode == "calibrated" else self.mode
        return Threshold(mode, float(self.value), float(self.min_area))


@dataclass(frozen=True)
class WorkerConfig:
    """The batched inference worker.

    Attributes:
        batch_size: frames per forward pass (across all sources).
        batch_timeout_ms: push a partial batch this long after its first frame arrived
            (DeepStream's batched-push-timeout): bounds the latency batching adds.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        fp16: half precision; None: on for cuda, off on cpu.
        backend: torch or onnxruntime (needs ``core.backends``).
        checkpoint: model checkpoint; None: the shipped one.
        onnx_path: ONNX model for the onnxruntime backend; None: exported next to the checkpoint.
        method: map method, one of ``core.cams.METHODS``.
        variance_fraction: HayCAM+ explained-variance fraction.
        threshold: how maps become boxes.
        mode: frame (classify and explain the whole frame) or faces (detector, then each face).
        detector: face detector name for faces mode (None: the default one).
        detector_options: keyword options of ``core.detect.create_detector`` (e.g. ``input_size``,
            ``score_threshold``, and the sliced-inference ``tiles``, ``overlap``, ...); checked when the
            detector is built, errors name ``worker.detector_options``.
        face_margin: faces mode: enlarge each face box by this fraction per side before cropping.
        max_faces: faces mode: keep at most this many faces per frame (highest score first).
        torch_threads: torch intra-op threads (None: torch's default).
        fast_resize: on CPU, shrink large frames as uint8 before normalising (about 3x faster
            preprocessing; differs from the float path by at most one uint8 rounding step).
    """

    batch_size: int = 4
    batch_timeout_ms: float = 10.0
    device: str = "auto"
    fp16: bool | None = None
    backend: str = "torch"
    checkpoint: str | None = None
    onnx_path: str | None = None
    method: str = "haycam+"
    variance_fraction: float = 0.9
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    mode: str = "frame"
    detector: str | None = None
    detector_options: dict[str, Any] = field(default_factory=dict)
    face_margin: float = 0.15
    max_faces: int = 32
    torch_threads: int | None = None
    fast_resize: bool = True

    def __post_init__(self) -> None:
        from core.cams import METHODS

        _check(self.batch_size >= 1, "batch_size", f"must be an int >= 1, got {self.batch_size}")
        _check(self.batch_size <= 512, "batch_size", f"must be an int <= 512, got {self.batch_size}")
        _check(
            0.0 <= self.batch_timeout_ms <= 10_000,
            "batch_timeout_ms",
            f"must be in [0, 10000], got {self.batch_timeout_ms}",
        )
        dev_ok = self.device in DEVICES or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        _check(dev_ok, "device", f"must be one of auto, cpu, cuda, cuda:N, got {self.device!r}")
        _check(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        _check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check(
            0.0 < self.variance_fraction <= 1.0, "variance_fraction", f"must be in (0, 1], got {self.variance_fraction}"
        )
        _check(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        _check(0.0 <= self.face_margin <= 1.0, "face_margin", f"must be in [0, 1], got {self.face_margin}")
        _check(self.max_faces >= 1, "max_faces", f"must be an int >= 1, got {self.max_faces}")
        _check(
            self.torch_threads is None or self.torch_threads >= 1,
            "torch_threads",
            f"must be an int >= 1 or null, got {self.torch_threads}",
        )


@dataclass(frozen=True)
class OverlayConfig:
    """What is drawn on each frame.

    Attributes:
        heatmap: blend the saliency map over the frame (``h`` toggles it in the window).
        alpha: heatmap opacity in [0, 1].
        colormap: OpenCV colormap name for the heatmap.
        boxes: draw boxes with label and score.
        hud: draw per-source FPS, latency and connection state.
        colors: box colour per class name, as [B, G, R] (OpenCV order).
        default_color: colour of classes not in ``colors`` ([B, G, R]).
        thickness: box line thickness in pixels.
        font_scale: label/HUD text scale.
    """

    heatmap: bool = True
    alpha: float = 0.4
    colormap: str = "jet"
    boxes: bool = True
    hud: bool = True
    colors: dict[str, tuple[int, int, int]] = field(
        default_factory=lambda: {"with_mask": (0, 200, 0), "without_mask": (0, 0, 255)}
    )
    default_color: tuple[int, int, int] = (255, 200, 0)
    thickness: int = 2
    font_scale: float = 0.5

    def __post_init__(self) -> None:
        _check(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
        _check(self.colormap in COLORMAPS, "colormap", f"must be one of {', '.join(COLORMAPS)}, got {self.colormap!r}")
        for name, c in list(self.colors.items()) + [("default_color", self.default_color)]:
            key = "default_color" if name == "default_color" else f"colors.{name}"
            _check(all(0 <= v <= 255 for v in c), key, f"must be 3 ints in [0, 255] (B, G, R), got {list(c)}")
        _check(1 <= self.thickness <= 50, "thickness", f"must be an int in [1, 50], got {self.thickness}")
        _check(0.1 <= self.font_scale <= 10, "font_scale", f"must be in [0.1, 10], got {self.font_scale}")


@dataclass(frozen=True)
class SinksConfig:
    """Where results go.

    Attributes:
        output: annotated video file (.mp4: mp4v, .avi: MJPG); several sources write
            ``<stem>-<k>.<ext>`` (k = source position). A path without a video suffix is a folder
            that gets one annotated image per frame, named after the photo for image-folder sources
            (``stream/sinks/images.py``). None: no video.
        events: JSON Lines events file. None: no events.
        snapshots: directory for JPEG snapshots of ``snapshot_labels`` detections. None: off.
        snapshot_labels: classes that trigger a snapshot.
        snapshot_interval_s: at most one snapshot per source per this many seconds.
        display: show a window when a display is available.
        video_fps: fps written to the video; None: the file's fps, or the measured rate for live.
    """

    output: str | None = None
    events: str | None = None
    snapshots: str | None = None
    snapshot_labels: tuple[str, ...] = ("without_mask",)
    snapshot_interval_s: float = 2.0
    display: bool = True
    video_fps: float | None = None

    def __post_init__(self) -> None:
        if self.output is not None:
            _check(
                Path(self.output).suffix.lower() in (".mp4", ".avi", ""),
                "output",
                f"must end in .mp4 (mp4v) or .avi (MJPG), or be a folder (no suffix), got {self.output!r}",
            )
        _check(self.snapshot_interval_s >= 0, "snapshot_interval_s", f"must be >= 0, got {self.snapshot_interval_s}")
        _check(
            self.video_fps is None or 0 < self.video_fps <= 1000,
            "video_fps",
            f"must be in (0, 1000] or null, got {self.video_fps}",
        )


@dataclass(frozen=True)
class RunConfig:
    """Run limits and console output.

    Attributes:
        max_frames: stop after this many frames in total (None: until the input ends).
        progress: show a progress bar when the frame count is known.
    """

    max_frames: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        _check(
            self.max_frames is None or self.max_frames >= 1,
            "max_frames",
            f"must be an int >= 1 or null, got {self.max_frames}",
        )


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    sources: SourcesConfig = field(default_factory=SourcesConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ---------------------------------------------------------------- building from dicts

_TYPE_WORDS = {int: "an int", float: "a number", bool: "a boolean (true/false)", str: "a string"}


def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}" if not isinstance(v, (dict, list)) else type(v).__name__


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to type ``tp``, or ConfigValueError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is Any:  # free-form (checked by its consumer, e.g. worker.detector_options)
        return copy.deepcopy(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigValueError(key, f"must be a mapping, got {_describe(value)}")
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigValueError(key, f"must be a boolean (true/false), got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigValueError(key, f"must be an int, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigValueError(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):  # "0" may be written as 0
            raise ConfigValueError(key, f"must be a string, got {_describe(value)}")
        return str(value)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and len(args) == 2 and args[1] is Ellipsis:
            value = [value]  # a single spec may be written without a list
        if not isinstance(value, (list, tuple)):
            raise ConfigValueError(key, f"must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigValueError(key, f"must be a list of {len(args)} values, got {list(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigValueError(key, f"must be a mapping, got {_describe(value)}")
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug here, not user input


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dot = f"{prefix}." if prefix else ""
    for k in data:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {dot}{close[0]}?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigValueError(f"{dot}{k}", f"is not a known key{hint}")
    kwargs = {k: _coerce(v, hints[k], f"{dot}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigValueError as exc:  # raised by __post_init__ with the bare field name
        raise ConfigValueError(f"{dot}{exc.key}", exc.message) from None


def merge(base: dict, overlay: Mapping) -> dict:
    """Deep merge: mappings merge key by key, anything else in ``overlay`` replaces."""
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def from_dict(data: Mapping[str, Any], origin: str = "config") -> Config:
    """A validated ``Config`` from a plain dict.

    Raises:
        UserError: ``"<origin>: <dotted.key> <problem>"`` for the first bad key.
    """
    try:
        return _build(Config, data)
    except ConfigValueError as exc:
        raise UserError(f"{origin}: {exc.key} {exc.message}") from None


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (empty file: {}).

    Raises:
        UserError: naming the file when it is missing, unreadable, not YAML or not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"config {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config {p}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise UserError(f"config {p}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p}: must hold a mapping of sections, got {type(data).__name__}")
    return data


def resolve_config_path(name: str | Path) -> Path:
    """A config path as given, or a bundled config by name (``webcam`` -> configs/webcam.yaml)."""
    p = Path(name)
    if p.exists() or p.suffix:
        return p
    bundled = CONFIG_DIR / f"{name}.yaml"
    return bundled if bundled.exists() else p


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then ``configs/default.yaml``, then ``path``, then ``overrides`` (command line).

    Each layer is validated with its own origin, so a message names the file (or
    "command line") that introduced the bad value.
    """
    data: dict = {}
    layers: list[tuple[str, Mapping]] = []
    if DEFAULT_CONFIG.is_file():
        layers.append((f"config {DEFAULT_CONFIG}", read_yaml(DEFAULT_CONFIG)))
    if path is not None:
        p = resolve_config_path(path)
        layers.append((f"config {p}", read_yaml(p)))
    if overrides:
        layers.append(("command line", overrides))
    cfg = Config()
    for origin, layer in layers:
        data = merge(data, layer)
        cfg = from_dict(data, origin)
    return cfg


def to_dict(cfg: Any) -> Any:
    """Plain-Python form of a config (tuples as lists), e.g. for logging or YAML."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg
