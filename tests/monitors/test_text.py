"""Text descriptors: a free-text column is profiled through per-row descriptors (length,
tokens, non-ASCII share, out-of-vocabulary rate, empty), each watched like a numeric column
by ``text_drift`` and ``text_range``; findings name the column and the descriptor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import watchkeeper as wk
from watchkeeper.baseline.text import DESCRIPTORS, TextPlan, plan_text
from watchkeeper.errors import SuiteError
from watchkeeper.profiles.core import merge

WORDS = [
    "the", "service", "was", "fast", "and", "the", "staff", "friendly", "but", "the",
    "price", "too", "high", "for", "what", "we", "got", "delivery", "late", "again",
    "please", "call", "me", "back", "about", "my", "order", "refund", "thanks", "great",
    "product", "works", "well", "broken", "after", "two", "days", "would", "buy",
    "again", "never",
]
NEW = ["zebra", "quantum", "violin", "glacier", "orbit", "saffron"]


def reviews(n: int, seed: int, words: list[str] = WORDS, longest: int = 15) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array(words, dtype=object)
    return [" ".join(rng.choice(vocab, size=k)) for k in rng.integers(1, longest, n)]


def table(n: int, seed: int, **kw) -> pa.Table:
    rng = np.random.default_rng(seed + 1000)
    return pa.table({"x": rng.normal(size=n), "review": reviews(n, seed, **kw)})


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(table(20_000, 0))


def test_a_text_column_gets_descriptor_monitors(suite: wk.Suite) -> None:
    spec = suite.schema["review"]
    assert spec.kind == "text" and spec.text is not None
    assert set(spec.text.edges) == set(DESCRIPTORS)
    assert set(spec.text.vocabulary) == set(WORDS)  # every word is frequent here
    ids = {m.id for m in suite.monitors}
    assert {"text_drift:review", "text_range:review", "invalid_rate:review",
            "missing_rate:review"} <= ids


def test_descriptors_merge_like_the_union(suite: wk.Suite) -> None:
    data = table(3_000, 1)
    whole = suite.profile(data).columns["review"]
    parts = merge(suite.profile(data.slice(0, 1234)), suite.profile(data.slice(1234)))
    merged = parts.columns["review"]
    assert set(whole.descriptors) == set(DESCRIPTORS)
    for name, d in whole.descriptors.items():
        m = merged.descriptors[name]
        assert (m.count, m.missing, m.invalid) == (d.count, d.missing, d.invalid)
        assert m.bins.tolist() == d.bins.tolist()
        assert m.moments.mean == pytest.approx(d.moments.mean)


def test_new_vocabulary_is_found_and_named(suite: wk.Suite) -> None:
    drifted = table(5_000, 2, words=WORDS + NEW)
    found = suite.check(drifted).findings
    text = [f for f in found if f.monitor in ("text_drift", "text_range")]
    assert {(f.monitor, f.column, f.metric) for f in text} >= {
        ("text_drift", "review", "oov_rate"), ("text_range", "review", "oov_rate")}
    oov = next(f for f in text if f.monitor == "text_drift" and f.metric == "oov_rate")
    assert oov.evidence["descriptor"] == "oov_rate"
    assert oov.evidence["window_mean"] > oov.evidence["reference_mean"] + 0.1
    assert "review's oov_rate" in oov.message
    assert not [f for f in found if f.column == "x"]


def test_longer_texts_are_found_as_length_and_tokens(suite: wk.Suite) -> None:
    found = suite.check(table(5_000, 3, longest=30)).findings
    metrics = {f.metric for f in found if f.monitor == "text_drift"}
    assert {"length", "tokens"} <= metrics


def test_clean_windows_raise_no_text_finding(suite: wk.Suite) -> None:
    result = suite.check(table(60_000, 4), window_rows=3_000)
    assert len(result.windows) == 20
    assert not [f for f in result.findings if f.column == "review"]


def test_non_strings_are_counted_invalid(suite: wk.Suite) -> None:
    numbers = pa.table({"x": np.zeros(200), "review": pa.array([7] * 150 + [None] * 50)})
    cp = suite.profile(numbers).columns["review"]
    assert (cp.count, cp.missing, cp.invalid) == (200, 50, 150)
    assert cp.descriptors["length"].valid == 0
    found = suite.check(numbers).findings
    assert ("invalid_rate", "review") in {(f.monitor, f.column) for f in found}


def test_texts_without_words_move_the_empty_share(suite: wk.Suite) -> None:
    """Texts with no word at all (punctuation) are empty; blank ones are missing values."""
    data = table(5_000, 5)
    texts = data.column("review").to_pylist()
    texts[:500] = ["?!"] * 500
    texts[500:1_000] = ["  "] * 500
    data = data.set_column(1, "review", pa.array(texts))
    assert suite.profile(data).columns["review"].descriptors["empty"].bins.tolist()[1:3] == \
        [4_000, 500]
    found = {(f.monitor, f.metric) for f in suite.check(data).findings if f.column == "review"}
    assert {("text_drift", "empty"), ("missing_rate", None)} <= found


def test_streamed_check_finds_what_check_finds(suite: wk.Suite, tmp_path: Path) -> None:
    data = pa.concat_tables([table(6_000, 6), table(6_000, 7, words=WORDS + NEW)])
    pq.write_table(data, tmp_path / "cur.parquet", row_group_size=2_500)

    def keys(result: wk.CheckResult) -> list[tuple[str, str | None, str | None, float]]:
        return sorted((f.monitor, f.column, f.metric, round(f.value, 9))
                      for f in result.findings if f.column == "review")

    batch = suite.check(data, window_rows=4_000)
    streamed = suite.check_stream(tmp_path / "cur.parquet", window_rows=4_000, jobs=1)
    assert keys(batch) and keys(batch) == keys(streamed)


def test_the_suite_file_keeps_the_vocabulary_and_edges(suite: wk.Suite, tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    suite.save(path)
    loaded = wk.load(path)
    assert loaded.schema["review"].text == suite.schema["review"].text
    data = table(5_000, 8, words=WORDS + NEW)
    assert [f.to_dict() for f in loaded.check(data).findings] == \
        [f.to_dict() for f in suite.check(data).findings]
    document = yaml.safe_load(path.read_text())  # an inline entry wins over the fitted one
    document["columns"]["review"]["text"] = {"vocabulary": ["a"], "edges": {"colour": [0, 1]}}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SuiteError, match=r"columns\.review\.text.*unknown descriptor 'colour'"):
        wk.load(path)


def test_personal_data_and_ids_get_no_descriptors() -> None:
    rng = np.random.default_rng(0)
    t = pa.table({"email": [f"user{i}@example.com" for i in range(500)],
                  "request_id": [f"r-{i:06d}" for i in range(500)],
                  "x": rng.normal(size=500)})
    suite = wk.init(t)
    assert suite.schema["email"].text is None and suite.schema["request_id"].text is None
    assert not [m for m in suite.monitors if m.type.startswith("text_")]


def test_a_plan_without_tokens_watches_what_it_can() -> None:
    plan = plan_text(pa.chunked_array([["", " ", "!!"] * 20]))
    assert plan.vocabulary == [] and "oov_rate" not in plan.edges
    assert plan.edges["empty"] == [0.0, 0.5, 1.0]
    assert TextPlan.from_dict(plan.to_dict()) == plan


def test_a_streamed_init_plans_text_and_the_joint_model(tmp_path: Path) -> None:
    reference = table(8_000, 9)
    rng = np.random.default_rng(9)
    reference = reference.append_column("y2", pa.array(
        reference.column("x").to_numpy() + rng.normal(0, 0.3, 8_000)))
    pq.write_table(reference, tmp_path / "ref.parquet", row_group_size=3_000)
    suite = wk.init(tmp_path / "ref.parquet", stream=True, progress=False,
                    multivariate=True)
    assert suite.schema["review"].text is not None and suite.schema.multivariate is not None
    assert suite.reference.columns["review"].descriptors["oov_rate"].count == 8_000
    drifted = table(5_000, 10, words=WORDS + NEW)
    drifted = drifted.append_column("y2", pa.array(rng.normal(size=5_000)))  # tie broken
    found = {(f.monitor, f.metric) for f in suite.check(drifted).findings}
    assert {("text_drift", "oov_rate"), ("multivariate_drift", "reconstruction_error")} <= found
