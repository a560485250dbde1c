"""maskstream training: data, backbones, the epoch loop, budgets and diagnostics (``maskstream train``)."""
