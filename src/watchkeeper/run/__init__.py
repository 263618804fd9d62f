"""Running a suite over data: windows, the batch check and its result, label joins."""
