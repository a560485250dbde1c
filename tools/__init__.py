"""Scripts: training, evaluation, benchmarks and machine checks (``python -m tools.<name>``)."""
