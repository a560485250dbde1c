"""maskstream stream: moves frames and results (capture, worker, overlays, sinks, CLI). No math here."""
