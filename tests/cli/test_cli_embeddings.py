"""``watchkeeper init --embedding`` and ``--embed-text``: groups of columns and text columns
monitored as embeddings from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import watchkeeper as wk
from tests.helpers import run


def vectors(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(3).normal(0.0, 3.0, (4, 5))
    topic = rng.choice(4, n, p=[0.25 + shift, 0.25, 0.25, 0.25 - shift])
    x = centres[topic] + rng.normal(0.0, 1.0, (n, 5))
    return pa.table({**{f"emb_{i}": x[:, i] for i in range(5)},
                     "note": [f"item {t} was fine today thanks" for t in topic]})


def test_init_declares_a_group_by_prefix_and_check_finds_its_drift(tmp_path: Path) -> None:
    pq.write_table(vectors(3_000, seed=1), tmp_path / "ref.parquet")
    pq.write_table(vectors(2_000, seed=2, shift=0.2), tmp_path / "cur.parquet")
    done = run("init", "ref.parquet", "--embedding", "emb=emb_", "--embed-text", "",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suite = wk.load(tmp_path / "watchkeeper.yaml")
    assert suite.schema["emb"].members == [f"emb_{i}" for i in range(5)]
    assert suite.schema["note"].codebook is None  # --embed-text '' embeds no text
    done = run("check", "cur.parquet", "--format", "json", cwd=tmp_path)
    found = [f for w in json.loads(done.stdout)["windows"] for f in w["findings"]
             if f["monitor"] == "embedding_drift"]
    assert found and found[0]["column"] == "emb"


def test_init_refuses_a_malformed_embedding_option(tmp_path: Path) -> None:
    pq.write_table(vectors(500, seed=1), tmp_path / "ref.parquet")
    done = run("init", "ref.parquet", "--embedding", "emb", cwd=tmp_path)
    assert done.returncode != 0 and "--embedding" in done.stderr
    done = run("init", "ref.parquet", "--embedding", "emb=nothing_", cwd=tmp_path)
    assert done.returncode != 0 and "no column matches" in done.stderr


def test_init_refuses_a_text_model_without_text_columns_or_of_an_unknown_name(
        tmp_path: Path) -> None:
    pq.write_table(vectors(500, seed=1), tmp_path / "ref.parquet")
    done = run("init", "ref.parquet", "--text-model", "minilm", cwd=tmp_path)
    assert done.returncode != 0 and "embed_text" in done.stderr
    assert not (tmp_path / "watchkeeper.yaml").exists()
    done = run("init", "ref.parquet", "--embed-text", "note", "--text-model", "bert",
               cwd=tmp_path)
    assert done.returncode != 0 and "'--text-model': 'bert'" in done.stderr


def test_embed_text_embeds_a_column_judged_categorical_or_says_why_not(
        tmp_path: Path) -> None:
    """--embed-text COL is never silently ignored (#15): a column judged categorical is
    embedded as asked; one that cannot be is refused with its name and why."""
    from tests.monitors.test_embedding import answers

    pq.write_table(answers(2_000, seed=1), tmp_path / "ref.parquet")
    done = run("init", "ref.parquet", "--embed-text", "answer", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "answer: feature, judged categorical" in done.stdout
    spec = wk.load(tmp_path / "watchkeeper.yaml").schema["answer"]
    assert spec.kind == "text" and spec.codebook is not None
    (tmp_path / "watchkeeper.yaml").unlink()
    done = run("init", "ref.parquet", "--embed-text", "x", cwd=tmp_path)
    assert done.returncode == 2
    assert "--embed-text: 'x' holds numeric values, not text" in done.stderr
    done = run("init", "ref.parquet", "--embed-text", "email", cwd=tmp_path)
    assert done.returncode == 2 and "--not-pii" in done.stderr
    done = run("init", "ref.parquet", "--embed-text", "few", cwd=tmp_path)
    assert done.returncode == 2 and "(--text-model)" in done.stderr
    assert not (tmp_path / "watchkeeper.yaml").exists()
