"""The SDK in a model server as people write them: scikit-learn models that predict in
batches, FastAPI apps watched by the middleware alone, a lifespan that flushes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.helpers import REPO
from tests.sdk_helpers import Served
from watchkeeper.sdk import ASGIMiddleware, Client, MemorySink, lifespan

ADULT = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
         "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
         "hours-per-week", "native-country", "income"]
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(REPO / "data" / "adult" / "adult.data", names=ADULT,
                       skipinitialspace=True, na_values="?")


@pytest.fixture(scope="module")
def model(adult: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(adult[NUMERIC].to_numpy(),
                                                 adult["income"] == ">50K")


# -- batches -------------------------------------------------------------------------------------
def test_timed_sklearn_predict_logs_one_row_per_input_row(model: Any,
                                                          adult: pd.DataFrame) -> None:
    """Defect: ``wk.timed(model.predict)`` on a 2-D batch logged one row whose features and
    prediction were all null. Now each input row is a row, with its own prediction."""
    sink = MemorySink()
    client = Client(sink, feature_names=NUMERIC)
    predict = client.timed(model.predict)
    predict_proba = client.timed(model.predict_proba)
    X = adult[NUMERIC].to_numpy()[:250]
    labels = predict(X)
    scores = predict_proba(X)
    client.close()
    table = sink.events_table()
    assert table.num_rows == 500 and client.stats["bad_values"] == 0
    first, second = table.slice(0, 250), table.slice(250)
    assert first.column("age").to_pylist() == X[:, 0].tolist()
    assert first.column("prediction").to_pylist() == labels.tolist()
    assert second.column("proba").to_pylist() == scores[:, 1].tolist()
    assert all(v is not None and v >= 0 for v in table.column("_latency_ms").to_pylist())
    assert set(table.column("_error").to_pylist()) == {False}


def test_timed_batch_errors_are_logged_per_row_and_reraised(model: Any) -> None:
    sink = MemorySink()
    client = Client(sink, feature_names=NUMERIC)
    predict = client.timed(model.predict)
    with pytest.raises(ValueError):
        predict(np.zeros((3, 2)))  # the model wants 5 columns
    client.close()
    rows = sink.events_table().to_pylist()
    assert len(rows) == 3 and all(r["_error"] and r.get("prediction") is None for r in rows)
    assert client.stats["bad_values"] == 1  # 2 columns for 5 feature_names: counted once


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "dicts", "lists"])
def test_log_batch_takes_frames_tables_and_rows(kind: str, adult: pd.DataFrame) -> None:
    frame = adult[NUMERIC].iloc[:40]
    X: Any = {"pandas": frame, "polars": pl.from_pandas(frame),
              "arrow": pa.Table.from_pandas(frame, preserve_index=False),
              "dicts": frame.to_dict("records"), "lists": frame.to_numpy().tolist()}[kind]
    sink = MemorySink()
    client = Client(sink, feature_names=NUMERIC, id="rid")
    client.log_batch(X, np.arange(40) % 2, np.linspace(0, 1, 40), ids=[f"r{i}" for i in
                                                                       range(40)],
                     client="team-a")
    client.close()
    table = sink.events_table()
    assert table.num_rows == 40
    assert table.column("age").to_pylist() == frame["age"].astype(float).tolist() or \
        table.column("age").to_pylist() == frame["age"].tolist()
    assert table.column("rid").to_pylist()[-1] == "r39"
    assert set(table.column("_client").to_pylist()) == {"team-a"}
    assert client.stats["bad_values"] == 0


def test_log_batch_counts_misaligned_columns_and_never_raises() -> None:
    sink = MemorySink()
    client = Client(sink, feature_names=["a", "b"])
    client.log_batch(np.ones((4, 2)), [1, 0])  # two predictions for four rows
    client.log_batch("not a batch")
    client.log_batch(np.ones((2, 2, 2)))  # 3-D: unreadable, counted as rejected rows
    client.close()
    rows = sink.events_table().to_pylist()
    assert [r["prediction"] for r in rows] == [1, 0, None, None]
    stats = client.stats
    assert stats["bad_values"] == 2 and stats["rejected"] == 2 and stats["flushed_rows"] == 4


# -- the middleware ------------------------------------------------------------------------------
def _model_app(client: Client, model: Any, **options: Any) -> Any:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    predict = client.timed(model.predict)

    @app.post("/predict")
    def score(rows: list[list[float]]) -> dict[str, list[int]]:  # sync: runs in a thread
        return {"labels": predict(np.asarray(rows)).astype(int).tolist()}

    @app.post("/predict/async")
    async def score_async(rows: list[list[float]]) -> dict[str, list[int]]:
        labels = model.predict(np.asarray(rows))
        client.log_batch(np.asarray(rows), labels)
        return {"labels": labels.astype(int).tolist()}

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(ASGIMiddleware, client=client, **options)
    return app


def test_the_callers_id_reaches_the_prediction_rows(model: Any, adult: pd.DataFrame) -> None:
    """Defect: the middleware logged the caller on a separate latency-only row, so
    per-client monitors saw "(unknown)" on every prediction. Now the rows logged during a
    request carry its caller, latency and error; no row of its own is added."""
    sink = MemorySink()
    client = Client(sink, feature_names=NUMERIC, flush_interval=0.05)
    rows = adult[NUMERIC].iloc[:3].to_numpy().tolist()
    with Served(_model_app(client, model)) as served:
        assert served.request("POST", "/predict", rows, {"X-Client-Id": "team-a"}) == 200
        assert served.request("POST", "/predict/async", rows[:2],
                              {"X-Client-Id": "team-b"}) == 200
        assert served.request("POST", "/predict", [[1.0]], {"X-Client-Id": "team-c"}) == 500
        assert served.request("POST", "/predict", ["junk"]) == 422  # before the model
        for path in ("/healthz", "/docs", "/openapi.json"):
            assert served.request("GET", path) == 200
    client.close()
    table = sink.events_table().to_pylist()
    seen = sorted((r["_client"], r["_error"], r["age"] is not None) for r in table)
    assert seen == [("127.0.0.1", False, False)] + [("team-a", False, True)] * 3 + [
        ("team-b", False, True)] * 2 + [("team-c", True, False)]
    assert all(r["_latency_ms"] > 0 for r in table)  # log_batch had none: the request's


def test_paths_are_chosen_by_include_and_exclude(model: Any) -> None:
    sink = MemorySink()
    client = Client(sink, flush_interval=0.05)
    app = _model_app(client, model, include=["/predict/async"], exclude=None)
    with Served(app) as served:
        assert served.request("POST", "/predict", [[1.0] * 5]) == 200
        assert served.request("POST", "/predict/async", [[1.0] * 5]) == 200
        assert served.request("GET", "/healthz") == 200
    client.close()
    clients = sink.events_table().column("_client").to_pylist()
    assert clients == [None, "127.0.0.1"]  # /predict's row is logged, without a caller


@pytest.mark.slow
def test_per_client_findings_from_the_middleware_alone(adult: pd.DataFrame) -> None:
    """The must-show: a FastAPI app whose only integration is ``timed`` and the middleware;
    50 normal callers and one that floods near-identical rows; the window's check names
    the flooder."""
    features = [c for c in ADULT if c != "income"]
    reference = adult[features].sample(15_000, random_state=0)
    pool = adult[features].drop(reference.index)
    suite = wk.init(reference)
    sink = MemorySink()
    client = Client(sink, feature_names=features, flush_interval=0.05)
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    predict = client.timed(lambda frame: np.zeros(len(frame)))

    @app.post("/predict")
    def score(rows: list[dict[str, Any]]) -> dict[str, int]:
        return {"n": len(predict(pd.DataFrame(rows, columns=features)))}

    app.add_middleware(ASGIMiddleware, client=client)
    rng = np.random.default_rng(3)
    with Served(app) as served:
        for c in range(50):
            rows = pool.sample(int(rng.integers(40, 120)), random_state=c)
            body = rows.astype(object).where(rows.notna(), None).to_dict("records")
            assert served.request("POST", "/predict", body, {"X-Client-Id": f"user{c:02d}"}
                                  ) == 200
        same = pool.sample(3, random_state=99).astype(object)
        same = same.where(same.notna(), None).to_dict("records")
        for _ in range(100):
            assert served.request("POST", "/predict", same, {"X-Client-Id": "flooder"}) == 200
    client.close()
    window = sink.events_table()
    named = {f.segment for f in suite.check(window).alerts()
             if f.family == "security" and f.segment}
    assert named == {"client=flooder"}


def test_lifespan_flushes_when_the_app_stops() -> None:
    sink = MemorySink()
    client = Client(sink, flush_interval=3600)
    seen = []

    async def run() -> None:
        async def inner(app: Any) -> Any:
            seen.append("start")
            yield {"ready": True}
            seen.append("stop")

        import contextlib

        async with lifespan(client, contextlib.asynccontextmanager(inner))(None) as state:
            assert state == {"ready": True}
            client.log({"x": 1.0}, 1)
            await asyncio.sleep(0)
        assert threading.active_count() >= 1

    asyncio.run(run())
    assert seen == ["start", "stop"] and sink.rows == 1 and client.stats["buffered"] == 0
