"""The store's part of a label batch: look up and relabel K of N prediction records.

Fills the model's ``label_records`` with ``--n`` records (``--fill``, once: by the store's
own writes, 100,000 per transaction), then times ``Store.label_records`` for ``--k``
random ids in calls of 20,000 (as the fold asks) and one ``save_windows(labels=...)``
writing a label to each of them (one fold step's transaction)::

    psql -h 127.0.0.1 -d test -c 'CREATE SCHEMA bench_labels'
    URL='postgresql+psycopg://127.0.0.1/test?options=-csearch_path%3Dbench_labels'
    .venv/bin/python benchmarks/label_store.py "$URL" --n 1000000 --fill
    .venv/bin/python benchmarks/label_store.py "$URL" --n 1000000
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/label_store.py "$URL"  # older code

Results: benchmarks/results/join_memory.md.
"""

from __future__ import annotations

import argparse
import random
import time

from watchkeeper.store import Store
from watchkeeper.store.records import LabelRecords


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="store URL")
    parser.add_argument("--n", type=int, default=1_000_000, help="records stored")
    parser.add_argument("--k", type=int, default=100_000, help="labels looked up, written")
    parser.add_argument("--fill", action="store_true", help="store the N records first")
    parser.add_argument("--lookup-only", action="store_true")
    args = parser.parse_args()
    store = Store(args.url)
    if args.fill:
        started = time.monotonic()
        for part in range(0, args.n, 100_000):
            rows = ({"id": str(i), "start": float(i // 1000 * 60), "version": 1,
                     "codes": bytes(range(24)), "label": None}
                    for i in range(part, min(part + 100_000, args.n)))
            store.save_windows("m", [], labels=LabelRecords(rows=[rows]))
        print(f"stored {args.n} records: {time.monotonic() - started:.1f} s", flush=True)
    ids = [str(i) for i in random.Random(5).sample(range(args.n), args.k)]
    started = time.monotonic()
    found = 0
    for at in range(0, len(ids), 20_000):
        found += len(store.label_records("m", 1, ids[at:at + 20_000]))
    lookup = time.monotonic() - started
    print(f"lookup of {args.k} ids ({found} found): {lookup:.2f} s", flush=True)
    if not args.lookup_only:
        labels = [(i, float(n % 2)) for n, i in enumerate(ids)]
        started = time.monotonic()
        store.save_windows("m", [], labels=LabelRecords(labels=labels))
        print(f"relabel of {args.k}: {time.monotonic() - started:.2f} s", flush=True)
    store.close()


if __name__ == "__main__":
    main()
