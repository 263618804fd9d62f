"""Segments: drift, quality and performance per segment value, each against its own
reference rows, with a share of the budget split hierarchically; too small segments are
not evaluated; per-window segment profiles merge and round-trip like the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from watchkeeper.baseline.segments import MIN_ROWS, SHARE, fit_column, segment_names
from watchkeeper.errors import SuiteError
from watchkeeper.monitors.contract import poisson_bound
from watchkeeper.profiles.core import Profile, merge
from watchkeeper.suite.segments import runs_per_segment

REGIONS = ["north", "south", "east", "west", "tiny"]
SHARES = [0.06, 0.4, 0.3, 0.235, 0.005]


def rows(n: int, seed: int, *, shift: float = 0.0, flip: float = 0.0,
         region_p: list[float] | None = None) -> pa.Table:
    """A binary classifier's rows; ``shift`` moves x and ``flip`` flips labels in the north
    region only."""
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, n, p=region_p or SHARES)
    north = region == "north"
    x = rng.normal(size=n) + shift * north
    z = rng.exponential(size=n)
    plan = rng.choice(["free", "pro"], n, p=[0.7, 0.3])
    proba = 1 / (1 + np.exp(-(rng.normal(size=n) + z - 1)))
    label = (rng.random(n) < proba).astype(int)
    flipped = north & (rng.random(n) < flip)
    label[flipped] = 1 - label[flipped]
    return pa.table({"id": np.arange(n) + seed * 1_000_000, "region": region, "x": x, "z": z,
                     "plan": plan, "age": rng.integers(18, 90, n), "proba": proba,
                     "prediction": (proba > 0.5).astype(int), "label": label})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(rows(30_000, 0), target="label", segments=["region", "plan,age"],
                   progress=False)


def segment_findings(result: wk.CheckResult) -> list[wk.Finding]:
    return [f for f in result.findings if f.segment and "segment_rows" in f.evidence]


def test_segment_values_top_levels_bands_and_unseen() -> None:
    table = pa.table({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5,
                      "n": np.linspace(0.0, 1.0, 100)})
    c = fit_column(table.column("c"), "c", top=2)
    assert c.labels == ["a", "b", "other", "unseen", "missing"]
    codes = c.codes(pa.table({"c": ["a", "d", "zzz", None, "b"]}))
    assert [c.labels[i] for i in codes] == ["a", "other", "unseen", "missing", "b"]
    n = fit_column(table.column("n"), "n")
    assert n.bands is not None and len(n.bands) == 3
    assert n.labels[0].startswith("<") and n.labels[-2].startswith(">=")
    assert [n.labels[i] for i in n.codes(pa.table({"n": [0.0, 0.99, None]}))] == [
        n.labels[0], n.labels[-2], "missing"]
    assert segment_names(["a", "a,b"]) == [["a"], ["a", "b"]]
    with pytest.raises(SuiteError, match="pair of distinct"):
        segment_names(["a,b,c"])


def test_init_rejects_unknown_segment_column() -> None:
    with pytest.raises(SuiteError, match="no column 'nope'"):
        wk.init(rows(2_000, 0), segments="nope", progress=False)


def test_budget_split_between_population_and_segments(suite: wk.Suite) -> None:
    plain = wk.init(rows(30_000, 0), target="label", progress=False)
    by_id = {m.id: m for m in plain.monitors}
    seg = suite.segments
    assert seg is not None and seg.share == SHARE
    judged = seg.judged(suite.reference)
    assert "region=tiny" not in judged and "region=north" in judged
    for m in suite.monitors:
        if runs_per_segment(m):
            # the population keeps 1 − share; the segments share the rest, evenly
            assert m.alpha == pytest.approx(by_id[m.id].alpha * (1 - SHARE))
            per_value = seg.segment_alpha(m, suite.reference)
            assert per_value * len(judged) == pytest.approx(by_id[m.id].alpha * SHARE)
        elif m.calibrated:
            assert m.alpha == pytest.approx(by_id[m.id].alpha)


def test_drift_in_one_segment_is_found_and_attributed(suite: wk.Suite) -> None:
    result = suite.check(rows(20_000, 5, shift=1.0), window_rows=10_000, progress=False)
    for w in result.windows:
        found = [f for f in w.findings if f.severity != wk.Severity.INFO]
        assert [(f.monitor, f.column, f.segment) for f in found] == [
            ("feature_drift", "x", "region=north")]
        assert found[0].message.startswith("region=north: ")
    incident = result.incidents()[0]
    assert "region=north" in incident["title"]
    assert any("confined to region=north" in a for a in incident["advice"]["actions"])
    assert incident["advice"]["causes"][0]["name"] == "region=north"


def test_performance_drop_in_one_segment(suite: wk.Suite) -> None:
    result = suite.check(rows(20_000, 6, flip=0.5), progress=False)
    found = {(f.monitor, f.segment) for f in segment_findings(result)}
    assert ("performance", "region=north") in found
    assert all(f.segment == "region=north" for f in segment_findings(result))
    metrics = result.windows[0].metrics["segments"]["region=north"]
    assert metrics["realised"]["accuracy"] < metrics["estimated"]["accuracy"] - 0.1


def test_small_and_unseen_segments_are_not_evaluated(suite: wk.Suite) -> None:
    data = rows(8_000, 7)
    clean = suite.check(data, progress=False)
    assert clean.windows[0].status == "partly_evaluated"  # region=tiny: ~40 rows
    assert "region=tiny: n < 200" in clean.windows[0].unjudged_text()
    region = np.asarray(data.column("region").to_pylist(), dtype=object)
    region[:40] = "atlantis"
    data = data.set_column(1, "region", pa.array(region.tolist()))
    doc = suite.check(data, progress=False).to_dict()
    w = doc["windows"][0]
    # the new value shows as region drift (in the population, maybe in a plan*age
    # segment), not as a finding of the unseen segment
    assert {f["column"] for f in w["findings"]} == {"region"}
    assert not any((f["segment"] or "").startswith("region=") for f in w["findings"])
    skipped = {u["segment"]: u["reason"] for u in w["not_evaluated"]
               if u["monitor"] == "segment"}
    assert skipped["region=tiny"].endswith(f"n < {MIN_ROWS}")
    assert "unseen in the reference (40 rows)" in skipped["region=unseen"]
    assert w["metrics"]["segments"]["region=unseen"]["rows"] == 40
    assert "region=north" not in skipped


@pytest.mark.slow
def test_clean_windows_stay_within_the_segments_budget() -> None:
    reference = rows(20_000, 1)
    suite = wk.init(reference, segments="region", budget=0.2, progress=False,
                    ignore=["id", "label", "prediction", "proba"])
    seg = suite.segments
    assert seg is not None
    alpha = sum(seg.segment_alpha(m, suite.reference) * len(seg.judged(suite.reference))
                for m in suite.monitors if runs_per_segment(m) and m.enabled)
    windows = 120
    rng = np.random.default_rng(3)
    alerting = 0
    for _ in range(windows):
        window = reference.take(pa.array(rng.integers(0, reference.num_rows, 3_000)))
        found, _ = suite.assess(suite.profile(window))
        alerting += any(f.segment and f.severity != wk.Severity.INFO for f in found)
    assert alerting <= poisson_bound(alpha * windows)


def test_segment_profiles_merge_equals_union_and_round_trip(suite: wk.Suite) -> None:
    a, b = rows(3_000, 8, shift=1.0), rows(4_000, 9)
    merged = merge(suite.profile(a), suite.profile(b))
    union = suite.profile(pa.concat_tables([a, b]))
    assert merged.segments.keys() == union.segments.keys()
    for label, p in union.segments.items():
        assert merged.segments[label].rows == p.rows
        assert merged.segments[label].columns["x"].bins.tolist() == \
            p.columns["x"].bins.tolist()
        assert merged.segments[label].joint.keys() == p.joint.keys()
    key = [(f.monitor, f.column, f.segment, f.severity) for f in suite.assess(merged)[0]]
    assert key == [(f.monitor, f.column, f.segment, f.severity)
                   for f in suite.assess(union)[0]]
    restored = Profile.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert restored.to_dict() == merged.to_dict()


def test_suite_file_round_trip(suite: wk.Suite, tmp_path: Path) -> None:
    suite.save(tmp_path / "s.yaml")
    loaded = wk.Suite.load(tmp_path / "s.yaml")
    assert loaded.to_dict() == suite.to_dict()
    assert loaded.segments is not None and loaded.schema.segments
    data = rows(10_000, 10, shift=1.0)
    assert [f.to_dict() for f in loaded.check(data, progress=False).findings] == \
        [f.to_dict() for f in suite.check(data, progress=False).findings]
    text = (tmp_path / "s.yaml").read_text()
    broken = text.replace("segments:\n  share: 0.5", "segments:\n  share: 2")
    (tmp_path / "bad.yaml").write_text(broken)
    with pytest.raises(SuiteError, match=r"segments\.share"):
        wk.Suite.load(tmp_path / "bad.yaml")


def test_streamed_check_equals_batch_check(suite: wk.Suite, tmp_path: Path) -> None:
    data = rows(12_000, 11, shift=1.0)
    pq.write_table(data, tmp_path / "cur.parquet", row_group_size=2_500)
    batch = suite.check(data, window_rows=6_000, progress=False).to_dict()
    streamed = suite.check_stream(tmp_path / "cur.parquet", window_rows=6_000,
                                  progress=False, jobs=2).to_dict()
    assert json.dumps(streamed, sort_keys=True) == json.dumps(batch, sort_keys=True)
    assert any(f["segment"] == "region=north" for w in batch["windows"]
               for f in w["findings"])


def test_fairness_is_unchanged_by_segments() -> None:
    data = rows(20_000, 12)
    sex = np.random.default_rng(4).choice(["f", "m"], data.num_rows)
    data = data.append_column("sex", pa.array(sex))
    current = rows(10_000, 13).append_column(
        "sex", pa.array(np.random.default_rng(5).choice(["f", "m"], 10_000)))
    pred = np.asarray(current.column("prediction"))
    pred = np.where(np.asarray(current.column("sex")) == "f", 0, pred)  # f never selected
    current = current.set_column(current.column_names.index("prediction"), "prediction",
                                 pa.array(pred))
    plain = wk.init(data, target="label", sensitive="sex", progress=False)
    segmented = wk.init(data, target="label", sensitive="sex", segments="region",
                        progress=False)

    def fairness(s: wk.Suite) -> list[dict[str, object]]:
        return [f.to_dict() for f in s.check(current, progress=False).findings
                if f.family == "fairness"]

    assert fairness(plain) and fairness(plain) == fairness(segmented)


def test_report_has_a_segments_section(suite: wk.Suite) -> None:
    from watchkeeper.report import render

    html = render(suite.check(rows(8_000, 14, shift=1.0), progress=False).to_dict())
    section = html[html.index('id="wk-segments"'):]
    section = section[:section.index("</section>")]
    assert "region=north" in section and "alert" in section
    assert "region=tiny" in section and "not evaluated" in section and "n &lt; 200" in section


def test_late_labels_reach_the_segments(suite: wk.Suite) -> None:
    data = rows(12_000, 15, flip=0.5)
    labels = data.select(["id", "label"])
    joined = suite.check(data, window_rows=6_000, labels=labels, progress=False)
    late = suite.check(data.drop_columns(["label"]), window_rows=6_000, progress=False)
    before = late.windows[0].metrics["segments"]["region=north"]
    assert "accuracy" not in before.get("realised", {})
    late.add_labels(labels.slice(0, 7_000))
    late.add_labels(labels.slice(7_000))  # in two parts, any order
    # the same to the six digits of the JSON result (sums taken in another order)
    for a, b in zip(joined.to_dict()["windows"], late.to_dict()["windows"], strict=True):
        assert a["metrics"]["segments"] == b["metrics"]["segments"]
        assert [(f["monitor"], f["segment"], f["metric"], f["severity"]) for f in a["findings"]] \
            == [(f["monitor"], f["segment"], f["metric"], f["severity"]) for f in b["findings"]]
    assert any(f.segment == "region=north" and f.monitor == "performance"
               for f in late.findings)


@pytest.mark.slow
def test_segment_monitors_keep_the_monitor_contract() -> None:
    """Each monitor as a segment judges it (its segment α, the segment's reference rows and
    drift nulls) keeps every property of the per-monitor contract, the budget included,
    on windows drawn from the segment's own reference rows."""
    from watchkeeper.monitors import FeatureDrift
    from watchkeeper.monitors.contract import PROPERTIES, Case
    from watchkeeper.profiles.segments import plain_schema
    from watchkeeper.suite.segments import segment_monitor, segment_nulls

    reference = rows(20_000, 16)
    suite = wk.init(reference, target="label", segments="region", budget=0.2, progress=False)
    seg = suite.segments
    assert seg is not None
    label = "region=south"
    inner = plain_schema(suite.schema)
    ref = suite.reference.segments[label]
    south = np.asarray(reference.column("region").to_pylist(), dtype=object) == "south"
    pool = reference.filter(pa.array(south))
    rng = np.random.default_rng(17)
    windows = [wk.profile(pool.take(pa.array(rng.integers(0, pool.num_rows, 800))), inner)
               for _ in range(40)]
    fresh = rows(6_000, 18)
    data = fresh.filter(pa.array(np.asarray(fresh.column("region").to_pylist()) == "south"))
    case = Case(inner, ref, data, windows)
    checked = 0
    for m in suite.monitors:
        if not runs_per_segment(m) or m.column == "region":
            continue
        probe = segment_monitor(m, m.alpha, ref, inner)
        nulls = segment_nulls(probe, ref) if isinstance(m, FeatureDrift) else None
        copy = segment_monitor(m, seg.segment_alpha(m, suite.reference), ref, inner, nulls)
        for prop in PROPERTIES.values():
            prop(copy, case)
        checked += 1
    assert checked >= 10


def test_stored_records_keep_segment_codes_and_older_records_still_join(
        suite: wk.Suite) -> None:
    """The server's prediction records carry each row's segment codes; a record stored
    before they were kept reads back with code -1, and its label moves the window only."""
    from watchkeeper.profiles.segments import record_codes, segment_labels
    from watchkeeper.run.label_join import move_labels, pack_codes, unpack_codes

    data = rows(500, 22)
    task = suite.schema.task
    assert task is not None
    keys = segment_labels(suite.schema)
    codes = record_codes(data, suite.schema)
    back = unpack_codes(pack_codes(codes, task, keys), codes.label, task, keys)
    for key in keys:
        assert back.groups[key].tolist() == codes.groups[key].tolist()
    old = unpack_codes(pack_codes(codes, task), codes.label, task, keys)
    assert all((old.groups[k] == -1).all() for k in keys)
    before = suite.profile(data.drop_columns(["label"])).to_dict()
    window = suite.profile(data.drop_columns(["label"]))
    old.label[:] = len(task.classes) + 1  # unlabelled, as the window counts them
    move_labels(old, np.arange(500), codes.label, task, window, keys)
    after = window.to_dict()
    assert after["segments"] == before["segments"] and after != before


def test_segment_drift_nulls_are_fitted_at_init_and_kept_in_the_suite_file(
        suite: wk.Suite, tmp_path: Path) -> None:
    """A check fits no null: init fitted one per judged segment value and drift column, the
    suite file keeps them (in ``fitted:``), and a suite file without them (written before
    they were kept) still judges the same, fitting them then."""
    seg = suite.segments
    assert seg is not None
    judged = seg.judged(suite.reference)
    assert {label for label, _ in seg.nulls} == set(judged)
    assert ("region=north", "x") in seg.nulls and ("region=north", "region") not in seg.nulls
    suite.save(tmp_path / "s.yaml")
    text = (tmp_path / "s.yaml").read_text()
    assert "nulls" not in text.split("fitted:")[0]  # compressed with the fitted artefacts
    loaded = wk.Suite.load(tmp_path / "s.yaml")
    assert loaded.segments is not None and loaded.segments.nulls == seg.nulls
    data = rows(10_000, 23, shift=1.0)
    found = [f.to_dict() for f in loaded.check(data, progress=False).findings]
    assert loaded.segments.fitted_now == {}
    assert any(f["segment"] == "region=north" for f in found)
    doc = suite.to_dict()
    del doc["segments"]["nulls"]
    (tmp_path / "old.yaml").write_text(wk_dump(doc))
    old = wk.Suite.load(tmp_path / "old.yaml")
    assert old.segments is not None and old.segments.nulls == {}
    assert [f.to_dict() for f in old.check(data, progress=False).findings] == found
    assert old.segments.fitted_now.keys() <= seg.nulls.keys() and old.segments.fitted_now
    doc = suite.to_dict()
    doc["segments"]["nulls"]["region=north"]["x"][2] = [300, "wide", 1.0]
    (tmp_path / "bad.yaml").write_text(wk_dump(doc))
    with pytest.raises(SuiteError, match=r"segments\.nulls\.region=north\.x\[2\]"):
        wk.Suite.load(tmp_path / "bad.yaml")


def wk_dump(doc: dict) -> str:
    from watchkeeper.suite import file as suitefile

    return suitefile.dump(doc)


def test_suite_diff_reports_segments_and_their_calibration() -> None:
    """``watchkeeper diff`` names segmentations and values added or removed, the budget
    split's settings, values judged in one suite only and segment thresholds that moved."""
    ignore = ["id", "label", "prediction", "proba"]
    old = wk.init(rows(20_000, 0), segments="region", ignore=ignore, progress=False)
    assert wk.diff(old, old).empty
    more = wk.init(rows(20_000, 0), segments=["region", "plan"], ignore=ignore,
                   progress=False)
    d = wk.diff(old, more)
    assert d.segments_added == ["plan"] and not d.segments_removed
    assert "segments added (1): plan" in d.to_text()
    assert wk.diff(more, old).segments_removed == ["plan"]
    # twice the reference: region=tiny (0.5%) now has 200+ rows, every threshold tightens
    bigger = wk.init(rows(60_000, 0), segments="region", ignore=ignore, progress=False)
    assert bigger.segments is not None
    bigger.segments.share = 0.4
    d = wk.diff(old, bigger)
    assert {"monitor": "segments", "setting": "share", "old": 0.5, "new": 0.4} in \
        d.settings_changed
    assert [(j["segment"], j["judged"]) for j in d.segments_judged] == [("region=tiny", True)]
    moved = {(t["segment"], t["monitor"]): t for t in d.segment_thresholds_moved}
    north = moved[("region=north", "feature_drift:x")]
    assert north["new"] < north["old"]
    assert any(w.startswith("segment reference rows") for w in north["why"])
    assert ("region=north", "feature_drift:region") not in moved  # its own column
    assert "region=north: feature_drift:x" in d.to_text()
    assert "region=tiny: reference rows" in d.to_text() and "now judged" in d.to_text()
    assert d.to_dict()["segment_thresholds_moved"]
