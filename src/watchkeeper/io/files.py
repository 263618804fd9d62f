"""Files written whole or not at all.

>>> import tempfile
>>> from pathlib import Path
>>> target = Path(tempfile.mkdtemp()) / "out.txt"
>>> write_atomic(target, "hello").read_text(), [p.name for p in target.parent.iterdir()]
('hello', ['out.txt'])
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes | memoryview) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: a crash or a concurrent reader
    never sees half a file. Written to a hidden temporary file next to it (one per process,
    so two writers do not mix), flushed to disk, then renamed over the target; on failure
    the temporary file is removed and the error raised (OSError)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
