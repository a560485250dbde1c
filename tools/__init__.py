"""Scripts: benchmarks and machine checks (``python -m tools.<name>``)."""
