"""Delta Lake tables by path: the live data files of a table directory, from its log.

A Delta table is a directory of Parquet files and a transaction log, ``_delta_log/``
(the open Delta protocol, github.com/delta-io/delta PROTOCOL.md): commit ``N`` is the file
``%020d.json`` of N, one action a line; an ``add`` action puts a data file in the table, a
``remove`` takes one out (it stays on disk until vacuumed). A checkpoint
(``%020d.checkpoint.parquet``, or parts ``%020d.checkpoint.%010d.%010d.parquet``) holds the
table's state at its version as ``add``/``remove`` rows, and ``_last_checkpoint`` names the
latest one. The table's state is the checkpoint's live files, then the commits after it in
order. Files a remove took out are not read: their rows are not in the table.

Read here without Spark's Delta jar: tables whose files are whole (no deletion vectors,
which a reader must apply row by row) are supported; a table that needs more is refused
with a clear error, never read wrongly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from watchkeeper.errors import DataError

LOG = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10})?\.parquet$")


def is_delta(path: str | Path) -> bool:
    """Whether ``path`` is a Delta table directory (it has a ``_delta_log``)."""
    return (Path(path) / LOG).is_dir()


def live_files(path: str | Path) -> list[Path]:
    """The data files of the Delta table at ``path`` at its latest version, sorted; the
    files a commit removed are not among them. DataError for a log that cannot be read or
    a table this reader cannot read exactly."""
    root = Path(path)
    log = root / LOG
    names = [p.name for p in log.iterdir()] if log.is_dir() else []
    commits = sorted(int(m[1]) for n in names if (m := _COMMIT.match(n)))
    start, live = _checkpoint(log, names)
    later = [v for v in commits if v > start]
    if start < 0 and (not later or later[0] != 0):
        raise DataError(f"{root}: a Delta log without commit 0 nor a checkpoint "
                        f"(found {len(commits)} commit file(s))")
    for expected, version in enumerate(later, start=start + 1):
        if version != expected:
            raise DataError(f"{root}: the Delta log misses commit {expected} (next: {version})")
        _apply(log / f"{version:020d}.json", live)
    files = sorted(_resolve(root, p) for p in live)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{root}: the Delta log names {len(missing)} data file(s) not on "
                        f"disk, e.g. {missing[0]}")
    return files


def _checkpoint(log: Path, names: list[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """The version of the checkpoint to start from (-1: none) and its live files."""
    version = -1
    pointer = log / "_last_checkpoint"
    if pointer.is_file():
        try:
            version = int(json.loads(pointer.read_text())["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{pointer}: not a readable _last_checkpoint ({exc})") from None
    else:  # no pointer: the latest checkpoint in the log, if any
        version = max((int(m[1]) for n in names if (m := _CHECKPOINT.match(n))), default=-1)
    if version < 0:
        return -1, {}
    parts = sorted(n for n in names if (m := _CHECKPOINT.match(n)) and int(m[1]) == version)
    if not parts:
        raise DataError(f"{log}: _last_checkpoint names version {version}, whose checkpoint "
                        "file is not in the log")
    import pyarrow.parquet as pq

    live: dict[str, dict[str, Any]] = {}
    for name in parts:
        try:
            table = pq.read_table(log / name)
        except Exception as exc:  # whatever the bytes make Arrow say
            raise DataError(f"{log / name}: not a readable checkpoint ({exc})") from None
        rows = table.select([c for c in ("add", "remove") if c in table.column_names])
        for row in rows.to_pylist():
            if row.get("add"):
                _added(live, row["add"], log / name)
            elif row.get("remove"):
                live.pop(row["remove"]["path"], None)
    return version, live


def _apply(commit: Path, live: dict[str, dict[str, Any]]) -> None:
    """One commit's actions, in order, on the live files."""
    try:
        lines = commit.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{commit}: cannot read ({exc})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{commit}: line {n} is not JSON ({exc})") from None
        if "add" in action:
            _added(live, action["add"], commit)
        elif "remove" in action:
            live.pop(action["remove"]["path"], None)
        elif "protocol" in action:
            readers = action["protocol"].get("readerFeatures") or []
            unknown = sorted(set(readers) - {"timestampNtz", "columnMapping"})
            if unknown or action["protocol"].get("minReaderVersion", 1) > 3:
                raise DataError(f"{commit}: the table needs reader features "
                                f"{unknown or action['protocol']}, which watchkeeper's "
                                "Delta reader does not apply; export it to Parquet")
        elif "metaData" in action:
            mode = (action["metaData"].get("configuration") or {}).get(
                "delta.columnMapping.mode", "none")
            if mode != "none":
                raise DataError(f"{commit}: the table maps column names "
                                f"(delta.columnMapping.mode={mode}), which watchkeeper's "
                                "Delta reader does not apply; export it to Parquet")


def _added(live: dict[str, dict[str, Any]], add: dict[str, Any], where: Path) -> None:
    if add.get("deletionVector"):
        raise DataError(f"{where}: data file {add['path']} has deleted rows (a deletion "
                        "vector), which watchkeeper's Delta reader does not apply; "
                        "run OPTIMIZE/REORG PURGE on the table, or export it to Parquet")
    live[add["path"]] = add


def _resolve(root: Path, path: str) -> Path:
    """A data file's path in the log (relative to the table and URL-encoded, or an
    absolute file URI) as a local path."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        local = Path(unquote(parsed.path))
        return local if local.is_absolute() else root / local
    raise DataError(f"{root}: the Delta log names a data file at {path}; only files under "
                    "the table's directory on this file system are read")


def partitioned(path: str | Path, files: list[Path]) -> bool:
    """Whether the files lie in Hive-style ``column=value`` directories under ``path``
    (a partitioned table: those columns come from the directories)."""
    root = Path(path)
    return any("=" in part for f in files for part in f.relative_to(root).parts[:-1])
