"""tools/small_face_calib.py: the features and the score line, on hand-computed cases."""

import numpy as np

from tools.small_face_calib import features, score


def test_features_hand_computed():
    # log-odds 2 and -1; sizes 8 px (log2 = 3) and 0.5 px (clamped to 1 px: log2 = 0)
    x = features(np.array([2.0, -1.0]), np.array([8.0, 0.5]))
    assert x.shape == (2, 3)
    np.testing.assert_allclose(x, [[2.0, 3.0, 6.0], [-1.0, 0.0, -0.0]])


def test_score_counts_each_class():
    y = np.array([1, 1, 0, 0, 0])
    pred = np.array([1, 0, 0, 1, 0])
    assert score(pred, y) == "2/5 wrong; without_mask right 1/2; with_mask right 2/3"
