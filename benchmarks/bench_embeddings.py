"""Embedding drift on real text: watchkeeper's codebook drift next to Evidently's embedding
drift methods, on the same windows and the same vectors.

Data: ``data/fortunes/fortunes.pq``, 15,163 texts of the BSD fortune collection in 39
topic files (see data/README.md). A seeded shuffle gives a reference of ``--reference``
texts; the rest is the pool windows are drawn from.

- Clean windows: ``--size`` texts drawn at random from the pool (the reference's topic mix).
- Shifted windows: a share s (5%, 10%, 20%) of the window drawn from one topic's pool
  texts, the rest at random: the topic's share grows by about s. The topic rotates over
  the topics with enough pool texts.

watchkeeper: ``wk.init(reference, embed_text="text")`` embeds the text itself (hashed word
n-grams → TF-IDF → 32-dimensional SVD fitted on the reference, no download) and fits its
codebook; a window alerts when its ``embedding_drift`` finding is a warning or critical
(its α is its share of the suite's default budget). The same run on the vectors as a list
column ("watchkeeper, vectors") checks that the column form agrees.

Evidently 0.7 (its own venv, ``benchmarks/.venv-evidently``): its ``DriftMethod`` objects
(model, model with bootstrap, mmd, ratio, distance; default settings) on the *same*
vectors: the suite's own text encoder applied to the same texts.

Also measured: profile size (bytes, the window profile's JSON) and profile time per 10k
vectors (text → vector → code, and list column → code).

Usage: python benchmarks/bench_embeddings.py [--windows 20] [--size 2000] [--reference 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA = REPO / "data" / "fortunes" / "fortunes.pq"
RESULTS = BENCH_DIR / "results" / "embeddings.md"
SHIFTS = (0.05, 0.10, 0.20)
EVIDENTLY_METHODS = ("model", "model_bootstrap", "mmd", "ratio", "distance")

sys.path.insert(0, str(BENCH_DIR))
import watchkeeper as wk  # noqa: E402
from bench_drift import ensure_evidently_venv  # noqa: E402
from watchkeeper.baseline import embedding  # noqa: E402
from watchkeeper.baseline.text_vectors import TextEncoder  # noqa: E402


def windows(texts: np.ndarray, topics: np.ndarray, *, n_windows: int, size: int,
            rng: np.random.Generator) -> list[tuple[str, float, str | None, np.ndarray]]:
    """(kind, shift, topic, row indices into the pool) for every window."""
    counts = {t: int(np.sum(topics == t)) for t in np.unique(topics)}
    big = sorted(t for t, c in counts.items() if c >= max(SHIFTS) * size)
    out: list[tuple[str, float, str | None, np.ndarray]] = []
    for _ in range(n_windows):
        out.append(("clean", 0.0, None, rng.choice(texts.size, size, replace=False)))
    for shift in SHIFTS:
        for i in range(n_windows):
            topic = big[i % len(big)]
            k = round(shift * size)
            of_topic = rng.choice(np.flatnonzero(topics == topic), k, replace=False)
            rest = rng.choice(texts.size, size - k, replace=False)
            out.append(("shift", shift, topic, np.concatenate([rest, of_topic])))
    return out


def run_evidently(reference: np.ndarray, vectors: list[np.ndarray]) -> dict | str:
    python, why = ensure_evidently_venv()
    if python is None:
        return why
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "vectors.npz", Path(tmp) / "out.json"
        np.savez(src, reference=reference, **{f"window_{i}": v for i, v in enumerate(vectors)})
        done = subprocess.run([str(python), str(BENCH_DIR / "embeddings_worker.py"), str(src),
                               str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"the Evidently worker failed: {done.stderr[-2000:]}"
        return json.loads(out.read_text())


def alerts(suite: wk.Suite, column: str, tables: list[pa.Table]) -> tuple[list[bool], float]:
    monitor = next(m for m in suite.monitors if m.type == "embedding_drift"
                   and m.column == column)
    flags = []
    for t in tables:
        found = monitor.evaluate(suite.profile(t), suite.reference)
        flags.append(any(f.severity.rank >= 1 for f in found))
    return flags, monitor.alpha


def rate(flags: list[bool], kinds: list[tuple[str, float, str | None]], kind: str,
         shift: float, topic: str | None = None) -> str:
    picked = [f for f, (k, s, t) in zip(flags, kinds, strict=True)
              if k == kind and s == shift and (topic is None or t == topic)]
    return f"{sum(picked)}/{len(picked)}" if picked else "–"


def held_out_topics(encoder: TextEncoder, held_out: np.ndarray, pool: np.ndarray, k: int,
                    seed: int) -> np.ndarray:
    """Topics of the pool texts by a clustering fitted on held-out texts (k-means on their
    vectors): each pool text's nearest held-out cluster."""
    from watchkeeper.baseline.embedding import Codebook

    book = Codebook.fit(encoder.transform(list(held_out)), k=k, seed=seed + 1)
    book.radii[:] = np.inf  # nearest cluster, never "outside"
    codes, _ = book.assign(encoder.transform(list(pool)))
    return np.asarray([f"cluster {c}" for c in codes], dtype=object)


def profile_cost(suite: wk.Suite, table: pa.Table, repeat: int = 3) -> tuple[float, int]:
    """Seconds per 10k rows (best of ``repeat``) and the profile's JSON bytes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        p = suite.profile(table)
        best = min(best, time.perf_counter() - start)
    size = len(json.dumps(p.to_dict(), separators=(",", ":")))
    return best * 10_000 / table.num_rows, size


def evaluate(name: str, suite: wk.Suite, vec_suite: wk.Suite, encoder: TextEncoder,
             ref_vectors: np.ndarray, pool: np.ndarray, topics: np.ndarray,
             args: argparse.Namespace, rng: np.random.Generator) -> tuple[list[str], float]:
    """The result table of one definition of topics; and watchkeeper's α."""
    plan = windows(pool, topics, n_windows=args.windows, size=args.size, rng=rng)
    kinds = [(k, s, t) for k, s, t, _ in plan]
    text_tables = [pa.table({"text": list(pool[rows])}) for _, _, _, rows in plan]
    vectors = [encoder.transform(list(pool[rows])) for _, _, _, rows in plan]
    vec_tables = [pa.table({"v": list(v)}) for v in vectors]
    started = time.perf_counter()
    wk_text, alpha = alerts(suite, "text", text_tables)
    wk_seconds = (time.perf_counter() - started) / len(plan)
    wk_vec, _ = alerts(vec_suite, "v", vec_tables)
    rows = [("watchkeeper `embedding_drift` (text column)", wk_text, f"{wk_seconds:.3f}"),
            ("watchkeeper `embedding_drift` (vector column)", wk_vec, "")]
    skipped = ""
    if not args.no_evidently:
        found = run_evidently(ref_vectors, vectors)
        if isinstance(found, str):
            skipped = found
        else:
            for method in EVIDENTLY_METHODS:
                secs = float(np.mean(found[method]["seconds"]))
                rows.append((f"Evidently `{method}`", found[method]["drift"], f"{secs:.3f}"))
    shifted = sorted({t for _, _, t, _ in plan if t is not None})
    lines = [f"## Topics: {name}", "",
             f"Shifted topics (rotating): {', '.join(shifted)}.", "",
             "| detector | false alerts, clean | 5% shift | 10% shift | 20% shift | "
             "s / window |", "| --- | --- | --- | --- | --- | --- |"]
    for label, flags, secs in rows:
        cells = [rate(flags, kinds, "clean", 0.0)] + [rate(flags, kinds, "shift", s)
                                                       for s in SHIFTS]
        lines.append(f"| {label} | {' | '.join(cells)} | {secs or '–'} |")
    lines += ["", "Detections at the 20% shift by topic:", "",
              "| detector | " + " | ".join(shifted) + " |",
              "| --- | " + " | ".join("---" for _ in shifted) + " |"]
    for label, flags, _ in rows:
        lines.append(f"| {label} | " + " | ".join(
            rate(flags, kinds, "shift", max(SHIFTS), t) for t in shifted) + " |")
    if skipped:
        lines += ["", f"Evidently skipped: {skipped}"]
    return [*lines, ""], alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    load = os.getloadavg()[0]
    parser.add_argument("--windows", type=int, default=20, help="windows per condition")
    parser.add_argument("--size", type=int, default=2000, help="texts per window")
    parser.add_argument("--reference", type=int, default=4000, help="reference texts")
    parser.add_argument("--held-out", type=int, default=3000,
                        help="texts the topic clustering is fitted on")
    parser.add_argument("--clusters", type=int, default=12, help="held-out topic clusters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--fit-share", type=float, default=embedding.FIT_SHARE,
                        help="share of the reference the encoder and codebook are fitted on")
    args = parser.parse_args()
    embedding.FIT_SHARE = args.fit_share

    data = pq.read_table(DATA)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(data.num_rows)
    texts = np.asarray(data.column("text").to_pylist(), dtype=object)[order]
    topics = np.asarray(data.column("topic").to_pylist(), dtype=object)[order]
    cut = args.reference + args.held_out
    ref_texts, held_out = texts[: args.reference], texts[args.reference:cut]
    pool, pool_topics = texts[cut:], topics[cut:]

    start = time.perf_counter()
    suite = wk.init(pa.table({"text": list(ref_texts)}), embed_text="text", seed=args.seed)
    init_seconds = time.perf_counter() - start
    book = suite.schema["text"].codebook
    assert book is not None and book.encoder is not None
    encoder = book.encoder
    ref_vectors = encoder.transform(list(ref_texts))
    vec_suite = wk.init(pa.table({"v": list(ref_vectors)}), seed=args.seed)

    by_label, alpha = evaluate("the corpus' own topic files", suite, vec_suite, encoder,
                               ref_vectors, pool, pool_topics, args, rng)
    clusters = held_out_topics(encoder, held_out, pool, args.clusters, args.seed)
    by_cluster, _ = evaluate(f"{args.clusters} clusters fitted on {args.held_out:,} held-out "
                             "texts (k-means on their vectors)", suite, vec_suite, encoder,
                             ref_vectors, pool, clusters, args, rng)

    many = rng.choice(pool.size, 10_000, replace=True)
    text_cost = profile_cost(suite, pa.table({"text": list(pool[many])}))
    vec_cost = profile_cost(vec_suite, pa.table({"v": list(encoder.transform(
        list(pool[many])))}))

    lines = [
        "# Embedding drift on real text (topic-mix shift)",
        "",
        "Rerun: `make bench-embeddings` (`python benchmarks/bench_embeddings.py "
        f"--windows {args.windows} --size {args.size} --reference {args.reference}`).",
        "",
        f"Data: the BSD fortune collection (`data/fortunes/`, {data.num_rows:,} texts, "
        f"{len(set(topics))} topic files). A seeded shuffle: {args.reference:,} texts are the "
        f"reference, {args.held_out:,} are held out to fit a topic clustering, and windows of "
        f"{args.size:,} texts are drawn from the other {pool.size:,}. Clean windows keep the "
        "reference's topic mix; a shift of s draws s of the window from one topic (rotating "
        "over the topics with enough texts), the rest at random. "
        f"{args.windows} windows per condition.",
        "",
        "Same vectors for every tool: watchkeeper's own text encoder fitted at `init` "
        f"(hashed word n-grams → TF-IDF → {encoder.dim}-dimensional SVD, no download), "
        f"{book.k} codes. Evidently 0.7's embedding drift methods (`DriftMethod` objects as "
        "`EmbeddingsDriftMetric` calls them) run in their own venv with default settings; "
        "`model_bootstrap` is `model(bootstrap=True)`, which `EmbeddingsDriftMetric` picks by "
        "itself for references under 1,000 rows.",
        "",
        f"watchkeeper's `embedding_drift` α here: {alpha:.4g} (its share of the suite's "
        "default budget), so about 0.1 false alerts are expected in 20 clean windows; an "
        "alert is a warning or critical finding.",
        "",
        *by_label,
        *by_cluster,
        "## Reading the tables",
        "",
        "- The corpus' topic files are partly topics (computers) and partly collections of "
        "generic quotes (cookie, people, definitions) that no bag-of-words representation "
        "tells apart; every detector that stays calibrated finds the distinct topic and "
        "rarely the others. On topics defined by a held-out clustering the representation "
        "can see, the codebook test finds most 10–20% shifts with no false alert.",
        "- Evidently's `model` method (a classifier's ROC-AUC > 0.55) and `model_bootstrap` "
        "are not calibrated: their false alerts on clean windows are in the first column; "
        "`mmd` and `distance` at their default thresholds see none of these shifts.",
        "- Every clean window is drawn from the same pool of texts; the encoder and "
        "codebook are fitted on part of the reference and the reference's code counts come "
        "from the rest (cross-fitting), so the pool's code mix differs from the reference's "
        "no more than sampling explains (`make bench-embeddings-offset`).",
        "",
        "## Profile size and time",
        "",
        "| input | profile time per 10k rows | profile JSON bytes |",
        "| --- | --- | --- |",
        f"| text column (embed + assign) | {text_cost[0]:.3f} s | {text_cost[1]:,} |",
        f"| vector column ({encoder.dim} floats a row) | {vec_cost[0]:.3f} s | "
        f"{vec_cost[1]:,} |",
        "",
        f"`init` on the {args.reference:,} reference texts: {init_seconds:.1f} s (encoder, "
        "codebook, calibration). The suite file's fitted codebook + encoder: "
        f"{len(json.dumps(book.to_dict())):,} bytes of JSON before compression.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
        f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: "
        "timings are indicative). Python "
        f"{platform.python_version()}, watchkeeper {wk.__version__}.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
