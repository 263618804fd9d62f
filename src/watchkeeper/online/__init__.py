"""The online monitor: windows of a live event stream, and replays of past windows."""
