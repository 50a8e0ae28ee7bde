"""Running a model: the one runner, test-time augmentation, calibration, out-of-distribution scores, warnings, Grad-CAM and overlays, and prediction of uploads."""
