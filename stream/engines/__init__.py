"""Run engines besides the local one (``stream.pipeline``): ``ray_engine`` spreads cameras and inference over Ray.

Nothing here is imported by the local engine; ``ray`` is imported only by ``ray_engine`` / ``ray_actors``.
"""
