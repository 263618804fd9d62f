"""Batches kept on disk while the sink is away, so a restart of the model server loses none.

One Arrow IPC file per batch, named so that a listing sorts oldest first and says what the
batch is: ``<time_ns>-<batch_id>.<kind>.arrow``; the table keeps its batch id, so a batch
sent from the spool carries the key it was first sent with. Several processes may share a
directory (gunicorn workers): a process takes a file by renaming it to
``….arrow.<pid>.taken`` (atomic, so no two send it at once) and deletes it once sent; the
files a dead process had taken are put back by the next process that opens the spool. One
client per directory in a process.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pyarrow as pa

from watchkeeper.io.files import write_atomic

__all__ = ["Spool"]

_SUFFIX = ".arrow"


class Spool:
    """A directory of undelivered batches, at most ``max_bytes`` in all.

    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp(), max_bytes=1 << 20)
    >>> spool.put("events", "b1", pa.table({"x": [1.0, 2.0]}))
    True
    >>> taken = spool.take()
    >>> kind, table = spool.read(taken)
    >>> kind, table.num_rows, spool.rows()
    ('events', 2, 0)
    >>> spool.done(taken)
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 256 << 20) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"spool_bytes must be a whole number ≥ 1, got {max_bytes!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._recover()

    def _recover(self) -> None:
        """Put back the files that processes no longer alive had taken."""
        for path in self.directory.glob(f"*{_SUFFIX}.*.taken"):
            pid = path.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_name(path.name.rsplit(".", 2)[0]))

    def size(self) -> int:
        """Bytes held (taken files included)."""
        total = 0
        for path in self.directory.iterdir():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def put(self, kind: str, batch: str, table: pa.Table) -> bool:
        """Write a batch; False (nothing written) when it would take the spool past its
        bound or the disk refuses it."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()
        if self.size() + data.size > self.max_bytes:
            return False
        name = f"{time.time_ns():020d}-{batch}.{kind}{_SUFFIX}"
        try:
            write_atomic(self.directory / name, memoryview(data))
        except OSError:
            return False
        return True

    def take(self) -> Path | None:
        """Claim the oldest waiting batch for this process (None when there is none)."""
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            taken = path.with_name(f"{path.name}.{os.getpid()}.taken")
            try:
                os.replace(path, taken)
            except OSError:  # another process took it first
                continue
            return taken
        return None

    @staticmethod
    def read(taken: Path) -> tuple[str, pa.Table]:
        """The kind ("events" or "labels") and table of a claimed batch."""
        kind = taken.name.split(_SUFFIX)[0].rsplit(".", 1)[-1]
        with pa.memory_map(str(taken)) as source:
            table = pa.ipc.open_file(source).read_all()
        return kind, table

    @staticmethod
    def done(taken: Path) -> None:
        """Forget a batch that was delivered (or refused for good)."""
        with contextlib.suppress(OSError):
            taken.unlink()

    @staticmethod
    def give_back(taken: Path) -> None:
        """Return a claimed batch to the spool (its delivery failed; another try later)."""
        with contextlib.suppress(OSError):
            os.replace(taken, taken.with_name(taken.name.rsplit(".", 2)[0]))

    def rows(self) -> int:
        """Rows waiting (not counting claimed files), read from the files' footers."""
        total = 0
        for path in self.directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(OSError, pa.ArrowException), pa.memory_map(
                    str(path)) as source:
                reader = pa.ipc.open_file(source)
                total += sum(reader.get_batch(i).num_rows
                             for i in range(reader.num_record_batches))
        return total

    def waiting(self) -> bool:
        """Whether any batch waits to be sent."""
        return any(True for _ in self.directory.glob(f"*{_SUFFIX}"))


def _alive(pid: int) -> bool:
    """Whether another process has this id (this one has just opened the spool: a file taken
    under its own id was taken by an earlier process, a container restarted with the same
    pid, say)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
