"""A FastAPI model server for UCI Adult (income over 50K), monitored by watchkeeper.

The model is a scikit-learn pipeline trained at start-up on ``data/adult/adult.data``.
``POST /predict`` takes a list of people and answers their scores; every prediction goes to
a watchkeeper server (:class:`~watchkeeper.sdk.RemoteSink`) with the caller, latency and
error of its request (:class:`~watchkeeper.sdk.ASGIMiddleware`, caller from the
``X-Client-Id`` header). Rows are flushed when the server stops (SIGTERM included).

Run it against a watchkeeper server (its suite made from :func:`reference`)::

    python examples/fastapi_app.py reference out/adult_reference.parquet
    watchkeeper init out/adult_reference.parquet -o out/adult.yaml
    watchkeeper serve --suite adult=out/adult.yaml --no-auth &        # port 8000
    WATCHKEEPER_URL=http://127.0.0.1:8000 uvicorn --app-dir examples fastapi_app:app --port 8080
    curl -X POST -H "X-Client-Id: team-a" -H "Content-Type: application/json" \\
        -d '[{"age": 41, "workclass": "Private", "education": "Bachelors"}]' \\
        http://127.0.0.1:8080/predict

Settings: ``WATCHKEEPER_URL`` (default http://127.0.0.1:8000), ``WATCHKEEPER_MODEL``
("adult"), ``WATCHKEEPER_WRITE_TOKEN`` (none).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from watchkeeper.sdk import ASGIMiddleware, Client, RemoteSink, lifespan

DATA = Path(__file__).resolve().parents[1] / "data" / "adult"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
FEATURES = [c for c in COLUMNS if c not in ("fnlwgt", "income")]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship",
               "race", "sex", "native-country"]


def load(name: str = "adult.data") -> pd.DataFrame:
    """UCI Adult as published (no header row, "?" for missing, " >50K." in the test file)."""
    frame = pd.read_csv(DATA / name, names=COLUMNS, skipinitialspace=True, na_values="?",
                        comment="|")
    frame["income"] = frame["income"].str.rstrip(".") == ">50K"
    return frame


def train(frame: pd.DataFrame) -> Pipeline:
    """Logistic regression on one-hot categories (missing: a category of its own) and
    scaled numbers (missing: the median); cheap per request, no thread pool of its own."""
    numeric = [c for c in FEATURES if c not in CATEGORICAL]
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                       OneHotEncoder(handle_unknown="ignore")), CATEGORICAL),
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    model = make_pipeline(encode, LogisticRegression(max_iter=1_000))
    return model.fit(frame[FEATURES], frame["income"])


def reference(model: Pipeline, frame: pd.DataFrame) -> pd.DataFrame:
    """What ``watchkeeper init`` learns from: the features with the model's predictions,
    scores and the true label."""
    scores = model.predict_proba(frame[FEATURES])[:, 1]
    return frame[FEATURES].assign(prediction=(scores >= 0.5).astype(int), score=scores,
                                  label=frame["income"].astype(int))


model = train(load())
wk = Client(RemoteSink(os.environ.get("WATCHKEEPER_URL", "http://127.0.0.1:8000"),
                       model=os.environ.get("WATCHKEEPER_MODEL", "adult"),
                       token=os.environ.get("WATCHKEEPER_WRITE_TOKEN")),
            feature_names=FEATURES, proba="score")
app = FastAPI(title="UCI Adult income model", lifespan=lifespan(wk))
app.add_middleware(ASGIMiddleware, client=wk)


@app.post("/predict")
def predict(people: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Scores of the people given (missing fields are missing values)."""
    X = pd.DataFrame(people, columns=FEATURES)
    for column in FEATURES:
        X[column] = (X[column].astype(object) if column in CATEGORICAL
                     else pd.to_numeric(X[column], errors="coerce"))
    scores = model.predict_proba(X)[:, 1]
    wk.log_batch(X, (scores >= 0.5).astype(int), scores)
    return {"scores": np.round(scores, 4).tolist()}


@app.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__" and sys.argv[1:2] == ["reference"]:
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "adult_reference.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    reference(model, load("adult.test")).to_parquet(out, index=False)
    print(f"wrote {out}")
