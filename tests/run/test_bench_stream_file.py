"""benchmarks/bench_stream.py rewrites only its own section of the results file: the
lead's final run keeps the earlier runs and notes."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import benchmark


def test_a_run_replaces_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    bench = benchmark("bench_stream")
    out = tmp_path / "stream.md"
    bench.write_section(out, bench.CHECK_HEADING, f"{bench.CHECK_HEADING}\n\nfirst run\n")
    assert out.read_text().startswith(bench.TITLE + "\n\n" + bench.CHECK_HEADING)
    notes = "## Quiet run by the lead\n\nkept\n"
    out.write_text(out.read_text() + "\n" + notes)
    bench.write_section(out, bench.INIT_HEADING, f"{bench.INIT_HEADING}\n\ninit run\n")
    bench.write_section(out, bench.CHECK_HEADING, f"{bench.CHECK_HEADING}\n\nsecond run\n")
    text = out.read_text()
    assert "first run" not in text and text.count("second run") == 1
    assert "kept" in text and "init run" in text
    assert text.index("second run") < text.index("kept")


def test_a_missing_file_is_written_only_if_the_disk_has_room(tmp_path: Path) -> None:
    bench = benchmark("bench_stream")
    import shutil

    free = shutil.disk_usage(tmp_path).free
    rows = (free // bench.FILE_BYTES_PER_ROW) + 1  # more than the disk holds
    try:
        bench.prepare(tmp_path, [rows])
    except SystemExit as exc:
        assert "GB free" in str(exc) and "current_" in str(exc)
    else:
        raise AssertionError("prepare wrote a file the disk has no room for")
    assert not list(tmp_path.glob("current_*"))
