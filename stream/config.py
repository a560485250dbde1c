"""Run configuration: typed frozen dataclasses loaded from YAML and validated on load.

``configs/default.yaml`` (package data: installed with the package as ``stream/configs``) documents the defaults
(the dataclass defaults below are the same values, so a missing file changes nothing); ``--config FILE``
(or a bundled name: ``webcam``, ``rtsp``, ``offline``, ``crowd``) overlays it,
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

from core.backends import AUTO as BACKEND_AUTO
from core.backends import BACKENDS as BACKEND_KINDS  # the registry owns the backend names and options
from core.backends.base import DEVICES
from core.boxes import THRESHOLD_MODES as _CORE_THRESHOLD_MODES
from stream.colormaps import COLORMAPS
from stream.errors import ConfigValueError, UserError, check
from stream.people_config import PeopleConfig
from stream.sources.options import SourceOptions


def _config_dir() -> Path:
    """The bundled configs: ``configs/`` at the checkout's top, installed as ``stream/configs`` (setup.py)."""
    installed = Path(__file__).resolve().parent / "configs"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

BACKENDS = (BACKEND_AUTO, *BACKEND_KINDS)  # auto: resolved by core.backends.resolve_kind
MODES = ("frame", "faces")
THRESHOLD_MODES = ("calibrated", *_CORE_THRESHOLD_MODES)
ENGINES = ("local", "ray")


_check = check


@dataclass(frozen=True)
class SourcesConfig(SourceOptions):
    """Which sources to open and how: ``specs`` plus every ``stream.sources.SourceOptions`` field
    (its defaults and checks; see that class for each field).

    Attributes:
        specs: source specs: a camera index ("0"), an rtsp/http URL, a video file or an
            image folder. Empty: the bundled sample clip.
    """

    specs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(all(s.strip() for s in self.specs), "specs", "must be non-empty strings")
        super().__post_init__()

    def source_options(self) -> dict:
        """The ``SourceOptions`` keyword arguments (every field but ``specs``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SourceOptions)}


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


def _section_class(name: str, fields: list, doc: str, **methods: Any) -> type:
    """A frozen config dataclass whose fields come from a registry (``(name, type, field)`` triples)."""
    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace={"__doc__": doc, **methods})
    cls.__module__ = __name__
    return cls


def _backend_options_class() -> type:
    """``worker.backend_options``: one section per registered backend kind, typed by its options dataclass."""

    def to_kwargs(self, kind: str) -> dict:
        """The keyword arguments of ``core.backends.create_backend`` for backend ``kind`` (defaults left out)."""
        opts = getattr(self, kind)
        default = type(opts)()
        return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
                if getattr(opts, f.name) != getattr(default, f.name)}

    return _section_class(
        "BackendOptionsConfig",
        [(name, kind.options, field(default_factory=kind.options)) for name, kind in BACKEND_KINDS.items()],
        "Options per backend kind (``core.backends.BACKENDS``); only the chosen kind's are used.",
        to_kwargs=to_kwargs,
    )


BackendOptionsConfig = _backend_options_class()


@dataclass(frozen=True)
class WorkerConfig:
    """The batched inference worker.

    Attributes:
        batch_size: frames per forward pass (across all sources).
        batch_timeout_ms: push a partial batch this long after its first frame arrived
            (DeepStream's batched-push-timeout): bounds the latency batching adds.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        fp16: half precision; None: on for cuda, off on cpu.
        backend: ``auto`` or a kind registered in ``core.backends.BACKENDS`` (torch, onnxruntime); auto is
            ``core.backends.resolve_kind``: onnxruntime on the CPU when installed (same maps within 1e-4,
            tests/test_shipped_parity.py, and 2-4x faster), torch on CUDA.
        backend_options: per kind, its options (e.g. ``onnxruntime: {threads: 1, tensorrt: true}``).
        checkpoint: model checkpoint; None: the shipped one.
        onnx_path: ONNX model for the onnxruntime backend; None: exported next to the checkpoint.
        method: map method, one of ``core.cams.method_names()`` (incl. the model method ``haycam+hr``).
        variance_fraction: HayCAM+ explained-variance fraction.
        threshold: how maps become boxes.
        mode: frame (classify and explain the whole frame) or faces (detector, then each face).
        detector: face detector name for faces mode (None: the default one).
        detector_options: keyword options of ``core.detect.create_detector`` (e.g. ``input_size``,
            ``score_threshold``, and the sliced-inference ``tiles``, ``overlap``, ...); checked when the
            detector is built, errors name ``worker.detector_options``.
        crowd_detector_options: faces mode: a second, full-cost detector for crowds (options over
            ``detector_options``, e.g. ``tiles``, ``tile_input_size``, ``score_threshold``; empty: none).
            With people tracking it runs on the ``people.crowd`` schedule and seeds tracks; without
            tracking, and on image-folder photos, it is the detector of every frame. Errors name
            ``worker.crowd_detector_options``.
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
    backend: str = BACKEND_AUTO
    backend_options: BackendOptionsConfig = field(default_factory=BackendOptionsConfig)
    checkpoint: str | None = None
    onnx_path: str | None = None
    method: str = "haycam+"
    variance_fraction: float = 0.9
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    mode: str = "frame"
    detector: str | None = None
    detector_options: dict[str, Any] = field(default_factory=dict)
    crowd_detector_options: dict[str, Any] = field(default_factory=dict)
    face_margin: float = 0.15
    max_faces: int = 32
    torch_threads: int | None = None
    fast_resize: bool = True

    def __post_init__(self) -> None:
        from core.cams import method_names

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
        names = method_names()
        _check(self.method in names, "method", f"must be one of {', '.join(names)}, got {self.method!r}")
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

    def backend_kind(self) -> str:
        """``backend`` with ``auto`` resolved (``core.backends.resolve_kind``) for this device, fp16 and ONNX file."""
        from core.backends import resolve_kind

        return resolve_kind(self.backend, self.device, self.fp16, self.onnx_path)

    def backend_kwargs(self, kind: str | None = None) -> dict:
        """``worker.backend_options`` of backend ``kind`` (default: :meth:`backend_kind`), as
        ``create_backend`` keyword arguments."""
        return self.backend_options.to_kwargs(kind or self.backend_kind())


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


def _sinks_config_class() -> type:
    """``sinks``: built from the sink registry (``stream.sinks.SINKS``).

    The built-in (``flat``) sink types' option fields sit directly under ``sinks`` (``output``, ``events``,
    ``snapshots``, ...), then ``display``, then one section ``sinks.<name>`` per other registered sink type.
    Each type's options dataclass validates its own values.
    """
    import stream.sinks  # noqa: F401 - importing registers the sink types
    from stream.sinks.registry import SINKS

    flat_fields: list = []
    for t in SINKS.values():
        if t.flat:
            hints = typing.get_type_hints(t.options)
            for f in dataclasses.fields(t.options):
                default = field(default=f.default) if f.default is not dataclasses.MISSING else field(
                    default_factory=f.default_factory)
                flat_fields.append((f.name, hints[f.name], default))
    sections = [(t.name, t.options, field(default_factory=t.options)) for t in SINKS.values() if not t.flat]

    def options(self, name: str):
        """The options instance of sink type ``name``."""
        t = SINKS[name]
        if not t.flat:  # a type registered after this class was built has no section: its defaults (off)
            return getattr(self, name, None) or t.options()
        return t.options(**{f.name: getattr(self, f.name) for f in dataclasses.fields(t.options)})

    def __post_init__(self) -> None:
        for t in SINKS.values():
            if t.flat:
                options(self, t.name)  # the type's own checks, naming the key

    return _section_class(
        "SinksConfig",
        [*flat_fields, ("display", bool, field(default=True)), *sections],
        "Where results go: one entry per registered sink type, plus ``display`` (a window when a display is "
        "available).",
        options=options,
        __post_init__=__post_init__,
    )


SinksConfig = _sinks_config_class()


@dataclass(frozen=True)
class RunConfig:
    """Run limits and console output.

    Attributes:
        max_frames: stop after this many frames in total (None: until the input ends).
        progress: show a progress bar when the frame count is known.
        engine: local (one process, the default) or ray (cameras and inference as Ray actors, see ``ray``).
        address: ray engine: an existing cluster to join ("auto", "HOST:PORT"); None: a local loopback instance.
    """

    max_frames: int | None = None
    progress: bool = True
    engine: str = "local"
    address: str | None = None

    def __post_init__(self) -> None:
        _check(
            self.max_frames is None or self.max_frames >= 1,
            "max_frames",
            f"must be an int >= 1 or null, got {self.max_frames}",
        )
        _check(self.engine in ENGINES, "engine", f"must be one of {', '.join(ENGINES)}, got {self.engine!r}")


@dataclass(frozen=True)
class RayConfig:
    """The ray engine (``run.engine: ray``): camera actors, a shared batched inference pool.

    Attributes:
        group_size: sources per camera actor (1: one actor per camera).
        replicas: inference replicas (each on one GPU when the cluster has GPUs, else on CPUs).
        replica_cpus: CPUs reserved per CPU replica (also its torch threads).
        camera_cpus: CPUs reserved per camera actor (fractions allowed: decode is light at low rates).
        max_batch: most images one replica runs in one forward (across all cameras).
        batch_wait_ms: a replica waits this long after the first request for more before running.
        object_store_mb: object store of a local instance, MB (ignored when joining a cluster).
        max_restarts: restarts of one camera actor before its sources are given up on.
    """

    group_size: int = 1
    replicas: int = 1
    replica_cpus: float = 1.0
    camera_cpus: float = 0.5
    max_batch: int = 16
    batch_wait_ms: float = 5.0
    object_store_mb: int = 256
    max_restarts: int = 10

    def __post_init__(self) -> None:
        _check(self.group_size >= 1, "group_size", f"must be an int >= 1, got {self.group_size}")
        _check(self.replicas >= 1, "replicas", f"must be an int >= 1, got {self.replicas}")
        _check(self.replica_cpus > 0, "replica_cpus", f"must be > 0, got {self.replica_cpus}")
        _check(self.camera_cpus >= 0, "camera_cpus", f"must be >= 0, got {self.camera_cpus}")
        _check(1 <= self.max_batch <= 1024, "max_batch", f"must be an int in [1, 1024], got {self.max_batch}")
        _check(0 <= self.batch_wait_ms <= 10_000, "batch_wait_ms", f"must be in [0, 10000], got {self.batch_wait_ms}")
        _check(self.object_store_mb >= 80, "object_store_mb", f"must be an int >= 80, got {self.object_store_mb}")
        _check(self.max_restarts >= 0, "max_restarts", f"must be an int >= 0, got {self.max_restarts}")


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    sources: SourcesConfig = field(default_factory=SourcesConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    run: RunConfig = field(default_factory=RunConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    ray: RayConfig = field(default_factory=RayConfig)


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
    except ValueError as exc:  # an options dataclass from core (backends): its message names the field
        raise ConfigValueError(prefix or cls.__name__, f"is invalid: {exc}") from None


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
