"""Map methods, registered by name in one table (``METHODS``)."""
from __future__ import annotations

from core.cams.base import CamInputs, MapResult, Method
from core.cams.eigencam import eigencam
from core.cams.gradcam import gradcam
from core.cams.gradcampp import gradcam_pp
from core.cams.haycam import haycam, haycam_plus
from core.cams.layercam import layercam

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gradcam", gradcam, True, "GradCAM: mean-gradient channel weights"),
        Method("gradcam++", gradcam_pp, True, "GradCAM++: second-order channel weights"),
        Method("layercam", layercam, True, "LayerCAM: element-wise positive gradients"),
        Method("eigencam", eigencam, False, "EigenCAM: first principal component"),
        Method("haycam", haycam, True, "HayCAM: fixed-n PCA with reduced class weights"),
        Method("haycam+", haycam_plus, False, "HayCAM+: PCA components explaining 90% of variance, summed"),
    )
}


def get_method(name: str) -> Method:
    """The registered method called ``name``.

    Raises:
        ValueError: listing the valid names, for an unknown name.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown map method {name!r}; valid names: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "get_method", "CamInputs", "MapResult", "Method"]
