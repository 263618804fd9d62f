"""The clean pool's code-mix offset from the reference in bench_embeddings.py's setup: the JS
distance between the reference profile's code counts and those of the 8,163 pool texts, next
to what sampling alone gives at those sizes (both drawn from their pooled mix).

Run: ``python benchmarks/embeddings_offset.py`` (figures in results/embeddings.md; the
"before" figures were run at commit ad32777).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial.distance import jensenshannon

sys.path.insert(0, str(Path(__file__).parent))
import watchkeeper as wk
from bench_embeddings import DATA


def shares(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def main() -> None:
    data = pq.read_table(DATA)
    rng = np.random.default_rng(0)  # the benchmark's shuffle (seed 0, 4,000 + 3,000 texts)
    order = rng.permutation(data.num_rows)
    texts = np.asarray(data.column("text").to_pylist(), dtype=object)[order]
    ref, pool = texts[:4000], texts[7000:]
    suite = wk.init(pa.table({"text": list(ref)}), embed_text="text", seed=0)
    r = suite.reference.columns["text"].bins.astype(float)
    q = suite.profile(pa.table({"text": list(pool)})).columns["text"].bins.astype(float)
    js = jensenshannon(shares(r), shares(q), base=2)
    mix = shares(r + q)
    null = [jensenshannon(shares(rng.multinomial(int(r.sum()), mix).astype(float)),
                          shares(rng.multinomial(int(q.sum()), mix).astype(float)), base=2)
            for _ in range(2000)]
    print(f"reference rows counted {int(r.sum())}, pool {int(q.sum())}, codes {len(r)}")
    print(f"JS(reference, pool) = {js:.4f}; sampling alone: median {np.median(null):.4f}, "
          f"99th percentile {np.quantile(null, 0.99):.4f}")
    print("reference shares", np.round(shares(r), 3))
    print("pool shares     ", np.round(shares(q), 3))


if __name__ == "__main__":
    main()
