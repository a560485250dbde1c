"""The sink registry: a sink type is a ``Sink`` subclass registered with its options dataclass.

    @register_sink("web", WebOptions)          # in the sink's own module
    class WebSink(Sink):
        @classmethod
        def from_options(cls, opts: WebOptions, ctx: SinkContext) -> "WebSink | None":
            return cls(opts.port) if opts.enabled else None   # None: this sink is off

plus one import line in ``stream/sinks/__init__.py`` (``SINK_MODULES``). The run config then has a strict
section ``sinks.web`` built from ``WebOptions`` (unknown keys refused with the file and the dotted key; the
dataclass's ``__post_init__`` validates with ``stream.errors.check``), and ``build_sinks`` creates the sink.
The built-in video, events and snapshot sinks are registered ``flat``: their options keep their historic
place directly under ``sinks`` (``sinks.output``, ``sinks.events``, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from stream.sinks.base import Sink


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need besides its options, known once the sources are open.

    Attributes:
        source_ids: every source id, in order.
        fps: source id -> frames per second (None: unknown, measure it).
        class_names: the model's classes.
        live: source id -> True for a live source (a slow writer drops its frames instead of waiting);
            missing: a file source.
        emit: writes one more event dict into the events file (``EventsSink.emit``; same thread as
            ``write``), or None when no events file is configured. ``build_sinks`` fills it in for the
            types built after the events sink.
        sources: the open sources (``stream.frames.FrameSource``: ``source_id``, ``stats``), e.g. for
            counters the sources keep themselves (frames read, dropped, reconnects).
        sink_options: sink type name -> its options in this run, so a sink can follow another's settings
            (the metrics sink is on when the web view is).
        earlier: the sinks built before this one (``SINK_MODULES`` order), so one can attach to another
            (the web view serves the metrics sink's registry and shows the alert sink's alerts).
    """

    source_ids: Sequence[str]
    fps: dict[str, float | None]
    class_names: Sequence[str] = ()
    live: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    emit: Callable[[dict], None] | None = None
    sources: Sequence[Any] = ()
    sink_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    earlier: Sequence[Sink] = ()

    def options_of(self, name: str) -> Any:
        """The options of sink type ``name`` in this run (its defaults, i.e. off, when not given)."""
        opts = self.sink_options.get(name)
        return opts if opts is not None else SINKS[name].options()


@dataclass(frozen=True)
class SinkType:
    """A registered sink type.

    Attributes:
        name: the config section (``sinks.<name>``) and the registry key.
        options: the options dataclass (frozen; defaults mean "off").
        cls: the ``Sink`` subclass; ``cls.from_options(options, ctx)`` builds it (None: off).
        flat: the options' fields sit directly under ``sinks`` (the built-in sinks) instead of in ``sinks.<name>``.
    """

    name: str
    options: type
    cls: type[Sink]
    flat: bool = False

    def build(self, options: Any, ctx: SinkContext) -> Sink | None:
        """The sink for ``options``, or None when it is off."""
        return self.cls.from_options(options, ctx)  # type: ignore[attr-defined]


SINKS: dict[str, SinkType] = {}


def register_sink(name: str, options: type, *, flat: bool = False) -> Callable[[type[Sink]], type[Sink]]:
    """Class decorator: register a ``Sink`` subclass as sink type ``name`` with its options dataclass."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"sink {name!r}: options must be a dataclass, got {options!r}")

    def deco(cls: type[Sink]) -> type[Sink]:
        if name in SINKS and SINKS[name].cls is not cls:
            raise ValueError(f"sink type {name!r} is already registered (by {SINKS[name].cls.__name__})")
        if not callable(getattr(cls, "from_options", None)):
            raise TypeError(f"sink {name!r}: {cls.__name__} needs a classmethod from_options(options, ctx)")
        if flat:
            taken = {f.name for t in SINKS.values() if t.flat and t.name != name for f in dataclasses.fields(t.options)}
            clash = taken & {f.name for f in dataclasses.fields(options)}
            if clash:
                raise ValueError(f"sink {name!r}: options {sorted(clash)} are already keys of another sink")
        SINKS[name] = SinkType(name, options, cls, flat)
        return cls

    return deco
