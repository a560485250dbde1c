"""Scripts: training (``tools/train.py``) and benchmarks. A package so they can share code."""
