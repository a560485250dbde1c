"""The tracking benchmark: clips with exact ground truth made from annotated photos, and their scorer.

No annotated mask video exists here, so the clips are rendered from facemask_voc photos: a virtual
camera pans and zooms over a photo, faces enter and leave the frame, a moving board occludes them,
a face's label changes by splicing in a face of the other class, and shots cut between photos.
Every face's box, identity and label are known exactly in every frame (MOT format).

* :mod:`tools.trackbench.scene`: clip specs (shots, camera keyframes, occluders, splices) and the
  renderer (frames + per-frame ground truth); pure numpy / OpenCV, no files.
* :mod:`tools.trackbench.recipes`: the seeded benchmark set (which photos, which motions).
* :mod:`tools.trackbench.mot`: MOT-format ground truth (``gt/gt.txt``, ``gt/labels.csv``, ``seqinfo.ini``).
* :mod:`tools.trackbench.events`: ``maskstream run`` JSON Lines events -> per-frame predictions.
* :mod:`tools.trackbench.linker`: the baseline: per-frame detections linked by greedy IoU.
* :mod:`tools.trackbench.score`: tracking metrics (TrackEval's HOTA, CLEAR, Identity) and the
  product's own (per-person decision accuracy, per-frame accuracy, flips, time to decision, count error).

Commands: ``python -m tools.make_trackbench`` and ``python -m tools.score_trackbench``.
"""
