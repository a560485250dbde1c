"""Map methods, registered by name.

* ``METHODS``: the paper's six, each a pure function of one layer's activations (and gradients):
  :class:`Method`, run by ``core.explain.explain_features`` after any backend's forward.
* ``MODEL_METHODS``: methods that need the model and the input (``haycam+hr``: extra forwards):
  :class:`ModelMethod`, built once per model with :func:`build_model_method`.

``method_names()`` lists both, in that order; an unknown name is an error that lists them.
"""
from __future__ import annotations

from core.cams.base import CamInputs, MapResult, Method, ModelMethod
from core.cams.eigencam import eigencam
from core.cams.gradcam import gradcam
from core.cams.gradcampp import gradcam_pp
from core.cams.haycam import haycam, haycam_plus
from core.cams.haycam_hr import DEFAULT_HR, hires_runner
from core.cams.layercam import layercam

METHODS: dict[str, Method] = {}
MODEL_METHODS: dict[str, ModelMethod] = {}


def register_method(method: Method | ModelMethod) -> Method | ModelMethod:
    """Add a method to its table (``METHODS`` or ``MODEL_METHODS``); a name may be registered once."""
    if method.name in METHODS or method.name in MODEL_METHODS:
        raise ValueError(f"map method {method.name!r} is already registered")
    (MODEL_METHODS if isinstance(method, ModelMethod) else METHODS)[method.name] = method
    return method


for _m in (
    Method("gradcam", gradcam, True, "GradCAM: mean-gradient channel weights"),
    Method("gradcam++", gradcam_pp, True, "GradCAM++: second-order channel weights"),
    Method("layercam", layercam, True, "LayerCAM: element-wise positive gradients"),
    Method("eigencam", eigencam, False, "EigenCAM: first principal component"),
    Method("haycam", haycam, True, "HayCAM: fixed-n PCA with reduced class weights"),
    Method("haycam+", haycam_plus, False, "HayCAM+: PCA components explaining 90% of variance, summed"),
):
    register_method(_m)


register_method(ModelMethod(
    "haycam+hr", hires_runner,
    "HayCAM+ on a finer grid (shift-and-stitch, dilation, fusion or scale; variant calibrated on val)",
    DEFAULT_HR.to_dict(),
))


def method_names() -> tuple[str, ...]:
    """Every registered map method: the single-layer ones, then the model methods."""
    return (*METHODS, *MODEL_METHODS)


def get_method(name: str) -> Method:
    """The single-layer method called ``name``.

    Raises:
        ValueError: listing the valid names, for an unknown name (or a model method: see
            :func:`build_model_method`).
    """
    try:
        return METHODS[name]
    except KeyError:
        if name in MODEL_METHODS:
            raise ValueError(f"map method {name!r} needs the model, not only activations; "
                             "use core.explain.explain or core.cams.build_model_method") from None
        raise ValueError(f"unknown map method {name!r}; valid names: {', '.join(method_names())}") from None


def check_method(name: str) -> None:
    """Raises ValueError listing the valid names when ``name`` is not a registered method."""
    if name not in METHODS and name not in MODEL_METHODS:
        raise ValueError(f"unknown map method {name!r}; valid names: {', '.join(method_names())}")


def build_model_method(name: str, model: object, options: dict | None = None):
    """The runner of model method ``name`` for ``model`` (``ModelMethod.build``), options over its defaults."""
    spec = MODEL_METHODS.get(name)
    if spec is None:
        check_method(name)
        raise ValueError(f"map method {name!r} runs on activations; use core.explain.explain_features")
    return spec.build(model, {**spec.default_options, **(options or {})})


__all__ = ["METHODS", "MODEL_METHODS", "CamInputs", "MapResult", "Method", "ModelMethod", "build_model_method",
           "check_method", "get_method", "method_names", "register_method"]
