"""The suite: generated monitors with calibrated thresholds, its file, diff and deployment."""
