"""Embeddings and embedded text: the column kind, the codebook, the profile and the
EmbeddingDrift monitor (its per-monitor contract, detection, evidence and bad values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.embedding import Codebook, n_codes
from watchkeeper.baseline.schema import Kind, Role
from watchkeeper.errors import SuiteError
from watchkeeper.monitors import EmbeddingDrift
from watchkeeper.monitors.contract import check_monitor
from watchkeeper.profiles.core import merge

DIM = 6
CENTRES = np.random.default_rng(7).normal(0.0, 3.0, (5, DIM))
WORDS = {
    "space": "rocket orbit launch astronaut moon planet satellite gravity mission crew",
    "food": "bread cheese recipe oven butter flour sauce garlic dinner kitchen",
    "law": "court judge lawyer verdict trial appeal statute contract jury evidence",
    "music": "guitar song album concert melody chorus drummer lyrics band tour",
}


def vectors(n: int, seed: int, mix: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    topic = rng.choice(len(CENTRES), n, p=mix or [0.2] * 5)
    return CENTRES[topic] + rng.normal(0.0, 1.0, (n, DIM)), topic


def list_table(n: int, seed: int, mix: list[float] | None = None) -> pa.Table:
    x, _ = vectors(n, seed, mix)
    return pa.table({"emb": pa.array(list(x), type=pa.list_(pa.float64())),
                     "age": np.random.default_rng(seed).normal(40, 10, n)})


def group_table(n: int, seed: int, mix: list[float] | None = None) -> pa.Table:
    x, _ = vectors(n, seed, mix)
    return pa.table({f"e{i}": x[:, i] for i in range(DIM)})


def texts(n: int, seed: int, mix: list[float] | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    topic = rng.choice(len(names), n, p=mix or [0.25] * 4)
    out = []
    for t in topic:
        words = WORDS[names[t]].split()
        out.append(" ".join(rng.choice(words, rng.integers(5, 12))))
    return pa.table({"review": out})


@pytest.fixture(scope="module")
def list_suite() -> wk.Suite:
    return wk.init(list_table(4_000, seed=1))


def test_a_list_column_is_an_embedding_with_a_codebook(list_suite: wk.Suite) -> None:
    spec = list_suite.schema["emb"]
    assert spec.kind == Kind.EMBEDDING and spec.role == Role.FEATURE
    assert spec.codebook is not None and spec.codebook.dim == DIM
    assert spec.codebook.k == n_codes(4_000)
    types = {m.id for m in list_suite.monitors if m.column == "emb"}
    assert types == {"missing_rate:emb", "invalid_rate:emb", "embedding_drift:emb"}
    assert "feature_drift:emb" not in types


@pytest.mark.parametrize("form", ["list", "group", "text"])
def test_embedding_drift_keeps_the_monitor_contract(form: str) -> None:
    """Every property of the per-monitor contract, the alert budget on 30 clean windows
    included, for each form of embedding."""
    if form == "list":
        reference, data = list_table(4_000, 1), list_table(1_500, 2)
        clean = [list_table(1_000, 100 + i) for i in range(30)]
        suite = wk.init(reference)
        column = "emb"
    elif form == "group":
        reference, data = group_table(4_000, 1), group_table(1_500, 2)
        clean = [group_table(1_000, 100 + i) for i in range(30)]
        suite = wk.init(reference, embeddings={"emb": "e"})
        column = "emb"
    else:
        reference, data = texts(3_000, 1), texts(1_500, 2)
        clean = [texts(800, 100 + i) for i in range(30)]
        suite = wk.init(reference, embed_text="review")
        column = "review"
    report = check_monitor(EmbeddingDrift(column), reference, data, schema=suite.schema,
                           windows=clean)
    assert "within_budget" in report.passed and "merge_equals_union" in report.passed


def test_a_topic_shift_is_found_and_named_with_an_example_row(list_suite: wk.Suite) -> None:
    shifted = list_table(2_000, seed=5, mix=[0.6, 0.1, 0.1, 0.1, 0.1])
    found = [f for f in list_suite.check(shifted).windows[0].findings
             if f.monitor == "embedding_drift"]
    assert len(found) == 1
    evidence = found[0].evidence
    book = list_suite.schema["emb"].codebook
    assert book is not None
    # the code that gained most mass is topic 0's region, shown by a reference row of it
    gained = int(evidence["gained_codes"][0].split()[1])
    assert np.argmin(np.linalg.norm(CENTRES - book.centroids[gained], axis=1)) == 0
    example = int(evidence["gained_examples"][0].split()[1])
    _, ref_topic = vectors(4_000, seed=1)
    assert ref_topic[example] == 0
    assert evidence["window_share"] > evidence["reference_share"]
    same = list_table(2_000, seed=6)
    assert not [f for f in list_suite.check(same).windows[0].findings
                if f.monitor == "embedding_drift"]


def test_example_rows_are_the_reference_ids_when_there_is_an_id_column() -> None:
    t = list_table(1_000, seed=1).append_column("request_id", pa.array(
        [f"r{i}" for i in range(1_000)]))
    book = wk.init(t).schema["emb"].codebook
    assert book is not None and all(e.startswith("r") for e in book.examples)


def test_bad_vectors_are_counted_never_raised(list_suite: wk.Suite) -> None:
    good = list(vectors(3, seed=9)[0])
    rows = pa.array([good[0], None, [1.0, 2.0], [np.nan] * DIM, [np.inf] * DIM, good[1],
                     [], good[2]], type=pa.list_(pa.float64()))
    p = list_suite.profile(pa.table({"emb": rows}))
    cp = p.columns["emb"]
    assert (cp.count, cp.missing, cp.invalid, int(cp.bins.sum())) == (8, 1, 4, 3)
    as_text = list_suite.profile([{"emb": "not a vector"}, {"emb": None}])
    assert (as_text.columns["emb"].missing, as_text.columns["emb"].invalid) == (1, 1)
    found = list_suite.check(pa.table({"emb": pa.array(["a", "b"] * 50)})).windows[0].findings
    assert {"type_change", "invalid_rate"} <= {f.monitor for f in found}


def test_pandas_polars_and_fixed_size_lists_profile_alike(list_suite: wk.Suite) -> None:
    x, _ = vectors(500, seed=11)
    arrow = list_suite.profile(pa.table({"emb": pa.array(list(x), type=pa.list_(pa.float64()))}))
    fixed = list_suite.profile(pa.table({"emb": pa.FixedSizeListArray.from_arrays(
        pa.array(x.ravel()), DIM)}))
    frame = list_suite.profile(pd.DataFrame({"emb": list(x)}))
    polars = list_suite.profile(pl.DataFrame({"emb": x.tolist()}))
    for other in (fixed, frame, polars):
        assert other.columns["emb"].bins.tolist() == arrow.columns["emb"].bins.tolist()
        assert other.columns["emb"].invalid == 0


def test_merged_profiles_count_like_their_union(list_suite: wk.Suite) -> None:
    data = list_table(1_000, seed=12)
    whole = list_suite.profile(data)
    merged = merge(list_suite.profile(data.slice(0, 300)), list_suite.profile(data.slice(300)))
    assert merged.columns["emb"].bins.tolist() == whole.columns["emb"].bins.tolist()
    key = "embedding_distance:emb"
    assert np.allclose(merged.joint[key], whole.joint[key])
    assert merged.columns["emb"].moments.n == whole.columns["emb"].moments.n == 1_000


def test_the_suite_file_keeps_groups_and_codebooks(tmp_path) -> None:
    suite = wk.init(group_table(2_000, seed=1), embeddings={"emb": ["e0", "e1", "e2", "e3",
                                                                    "e4", "e5"]})
    assert all(suite.schema[f"e{i}"].role == Role.IGNORE for i in range(DIM))
    path = tmp_path / "suite.yaml"
    suite.save(path)
    text = path.read_text()
    assert "embeddings:\n  emb: [e0, e1, e2, e3, e4, e5]" in text
    loaded = wk.load(path)
    a, b = suite.schema["emb"].codebook, loaded.schema["emb"].codebook
    assert a is not None and b is not None
    assert np.array_equal(a.centroids, b.centroids) and np.array_equal(a.radii, b.radii)
    data = group_table(500, seed=3)
    assert loaded.profile(data).to_dict() == suite.profile(data).to_dict()
    broken = text.replace("emb: [e0, e1, e2, e3, e4, e5]", "emb: [e0, e1]")
    path.write_text(broken)
    with pytest.raises(SuiteError, match=r"embeddings\.emb.*codebook has 6 dimensions"):
        wk.load(path)


def test_a_group_missing_a_member_counts_rows_invalid() -> None:
    suite = wk.init(group_table(2_000, seed=1), embeddings={"emb": "e*"})
    data = group_table(200, seed=2).drop_columns(["e3"])
    cp = suite.profile(data).columns["emb"]
    assert (cp.count, cp.invalid, int(cp.bins.sum())) == (200, 200, 0)
    assert suite.profile(pa.table({"other": [1, 2]})).columns["emb"].count == 0


def test_declared_groups_are_checked() -> None:
    with pytest.raises(SuiteError, match=r"embeddings\.emb"):
        wk.init(group_table(500, seed=1), embeddings={"emb": "zz_"})
    with pytest.raises(SuiteError, match="at least 2"):
        wk.init(group_table(500, seed=1), embeddings={"emb": ["e0"]})


def test_free_text_is_embedded_without_any_download() -> None:
    suite = wk.init(texts(3_000, seed=1), embed_text=["review"])
    spec = suite.schema["review"]
    assert spec.kind == Kind.TEXT and spec.codebook is not None
    assert spec.codebook.encoder is not None
    assert "embedded" in (spec.note or "")
    shifted = texts(1_000, seed=2, mix=[0.55, 0.15, 0.15, 0.15])
    assert [f for f in suite.check(shifted).windows[0].findings
            if f.monitor == "embedding_drift"]
    assert spec.text is None  # judged by its topic mix, not its descriptors
    # text is embedded only when named (it costs ~0.15 ms a value); else: descriptors
    plain = wk.init(texts(500, seed=1)).schema["review"]
    assert plain.codebook is None and plain.text is not None


def test_codebook_fit_is_deterministic_and_bounded() -> None:
    x, _ = vectors(3_000, seed=1)
    a, b = Codebook.fit(x, seed=3), Codebook.fit(x, seed=3)
    assert np.array_equal(a.centroids, b.centroids) and a.examples == b.examples
    assert (n_codes(100), n_codes(10_000), n_codes(10**7)) == (8, 14, 64)
    same = np.ones((50, 3))
    assert Codebook.fit(same).k == 1


def test_a_lasting_shift_is_advised_as_covariate_drift_naming_the_regions(
        list_suite: wk.Suite) -> None:
    from datetime import UTC, datetime, timedelta

    from watchkeeper.online.replay import replay

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    windows = [(f"day {i:02d}", t0 + timedelta(days=i),
                list_table(2_000, seed=40 + i, mix=[0.6, 0.1, 0.1, 0.1, 0.1] if i >= 3
                           else None)) for i in range(7)]
    run = replay(list_suite, windows)
    incidents = [i for i in run.manager.incidents.values()
                 if any(a.monitor == "embedding_drift" for a in i.alerts.values())]
    assert len(incidents) == 1
    advice = run.advice()[incidents[0].id]
    assert advice.diagnosis == "covariate drift", advice.to_text()
    assert any("more of code" in a and "e.g. row" in a for a in advice.actions), advice.actions


def test_reference_code_counts_come_from_rows_the_fit_never_saw(tmp_path) -> None:
    table = texts(2_000, seed=1)
    suite = wk.init(table, embed_text=["review"])
    book = suite.schema["review"].codebook
    assert book is not None and book.fitted_on is not None
    fitted = book.fitted_on
    assert int(fitted.sum()) == 1_000  # a seeded half fits the encoder and the codebook
    unseen = suite.profile(table.filter(pa.array(~fitted))).columns["review"]
    ref = suite.reference.columns["review"]
    assert np.array_equal(ref.bins, unseen.bins) and int(ref.bins.sum()) == 1_000
    whole = suite.profile(table).columns["review"]
    assert not np.array_equal(ref.bins, whole.bins)
    drift = next(m for m in suite.monitors if m.type == "embedding_drift")
    assert drift.calibration["reference_rows"] == 1_000
    again = wk.init(table, embed_text=["review"])
    assert again.schema["review"].codebook.fitted_on is not None
    assert np.array_equal(again.schema["review"].codebook.fitted_on, fitted)
    path, copy = tmp_path / "a.yaml", tmp_path / "b.yaml"
    suite.save(path)
    again.save(copy)
    def body(p) -> list[str]:  # the file without its creation time
        return [line for line in p.read_text().splitlines() if not line.startswith("created:")]

    assert body(path) == body(copy)  # deterministic
    loaded = wk.load(path)
    assert loaded.schema["review"].codebook.fitted_on is None  # never saved
    assert loaded.reference.to_dict() == suite.reference.to_dict()
    data = texts(300, seed=4)
    assert loaded.profile(data).to_dict() == suite.profile(data).to_dict()
    # too few rows to spare half: fitted on every row, counted on every row
    small = wk.init(texts(150, seed=1), embed_text=["review"])
    small_book = small.schema["review"].codebook
    assert small_book is not None and small_book.fitted_on is None
    assert int(small.reference.columns["review"].bins.sum()) == 150


ANSWERS = ["great product fast delivery", "bad product slow delivery", "great service",
           "slow service bad support", "fast support great price", "price too high",
           "delivery late again", "support was helpful", "helpful staff great price",
           "late delivery bad packaging"]


def answers(n: int, seed: int, mix: list[float] | None = None) -> pa.Table:
    """A survey's short answers (10 distinct: judged categorical) beside other columns."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ANSWERS), n, p=mix)
    return pa.table({
        "answer": [ANSWERS[i] for i in pick], "x": rng.normal(size=n),
        "email": [f"user{i}@example.com" for i in range(n)],
        "plan": rng.choice(["basic", "pro"], n), "churned": rng.choice(["no", "yes"], n),
        "day": [f"2024-01-{1 + i % 28:02d}" for i in range(n)],
        "few": ["same words every time"] * n})


def test_a_column_judged_categorical_is_embedded_when_named() -> None:
    """embed_text names a column; one judged categorical (a short answer repeats in a
    reference) is embedded all the same, not skipped (#15)."""
    table = answers(2_000, seed=1)
    assert wk.init(table).schema["answer"].kind == Kind.CATEGORICAL
    suite = wk.init(table, embed_text="answer")
    spec = suite.schema["answer"]
    assert spec.kind == Kind.TEXT and spec.codebook is not None and spec.categories is None
    assert "judged categorical" in (spec.note or "") and "embedded" in (spec.note or "")
    ids = {m.id for m in suite.monitors if m.column == "answer"}
    assert "embedding_drift:answer" in ids and "feature_drift:answer" not in ids
    shifted = answers(1_000, seed=2, mix=[0.5] + [0.5 / 9] * 9)
    assert any(f.monitor == "embedding_drift" and f.column == "answer"
               for f in suite.check(shifted).windows[0].findings)


@pytest.mark.parametrize(("column", "kwargs", "why"), [
    ("x", {}, "'x' holds numeric values, not text"),
    ("email", {}, "'email' is personal data"),
    ("plan", {"ignore": "plan"}, "'plan' is not monitored"),
    ("churned", {"target": "churned"}, "'churned' is the target column"),
    ("day", {}, "'day' holds dates, not text"),
    ("few", {}, "'few' has too few distinct words across its 1000 texts"),
])
def test_embed_text_refuses_what_it_cannot_embed(column: str, kwargs: dict, why: str) -> None:
    with pytest.raises(SuiteError, match=r"^embed_text: ") as raised:
        wk.init(answers(2_000, seed=1), embed_text=column, **kwargs)
    assert why in str(raised.value)
