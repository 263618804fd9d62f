"""Retrain a model and re-baseline its monitors in the same step.

Run at the end of a training pipeline: it trains a scikit-learn classifier on UCI Adult
(data/adult), scores a held-out set to serve as the monitoring reference, builds a
calibrated suite from it and deploys that suite as the model's new version, so that a
retrain re-baselines the monitors automatically. Without --server it only writes the
suite file.

    python examples/train_and_deploy.py --server http://127.0.0.1:8000 --model adult
    (token: $WATCHKEEPER_WRITE_TOKEN)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

import watchkeeper as wk

DATA = Path(__file__).resolve().parents[1] / "data" / "adult"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship",
               "race", "sex", "native-country"]


def load(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(DATA / "adult.data", names=COLUMNS, skipinitialspace=True,
                        na_values="?")
    frame["label"] = (frame.pop("income") == ">50K").astype(int)
    return train_test_split(frame, test_size=0.3, random_state=seed)


def train(frame: pd.DataFrame, seed: int):
    features = frame.drop(columns=["label"])
    encode = ColumnTransformer(
        [("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                encoded_missing_value=-1), CATEGORICAL)],
        remainder="passthrough")
    model = make_pipeline(encode, HistGradientBoostingClassifier(random_state=seed))
    return model.fit(features, frame["label"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adult")
    parser.add_argument("--server", help="deploy to this watchkeeper server")
    parser.add_argument("--output", type=Path, default=Path("adult.watchkeeper.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_frame, holdout = load(args.seed)
    model = train(train_frame, args.seed)
    reference = holdout.reset_index(drop=True)
    reference.insert(0, "id", np.arange(len(reference)))
    features = reference.drop(columns=["id", "label"])
    reference["predicted_probability"] = model.predict_proba(features)[:, 1]
    reference["prediction"] = (reference["predicted_probability"] >= 0.5).astype(int)
    accuracy = float((reference["prediction"] == reference["label"]).mean())
    print(f"trained on {len(train_frame)} rows; hold-out accuracy {accuracy:.3f}")

    suite = wk.init(reference, target="label", name=args.model)
    suite.save(args.output)
    print(f"wrote {args.output}: {len(suite.monitors)} monitors")
    if args.server:
        answer = wk.deploy(suite, model=args.model, server=args.server,
                           note=f"retrain seed={args.seed}, hold-out accuracy {accuracy:.3f}")
        print(f"deployed {args.model} version {answer['version']} "
              f"(previous: {answer.get('previous') or 'none'})")
        if answer.get("summary"):
            print(answer["summary"])


if __name__ == "__main__":
    main()
