"""maskstream evaluation: context crops, maps, thresholds calibrated on val, reports and figures (``maskstream eval``)."""
