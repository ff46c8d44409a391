"""Why the store is Lance: K = 20 random fetches from N int8 passage records in three engines.

    pip install lmdb   # the only engine here dtx does not depend on
    python scripts/compare_stores.py 100000 /tmp/store-compare

Writes N records of 150 tokens x 192 int8 values + 150 float32 scales (a bert-base 4x store) to
Lance (B-tree id index and plain row take), LMDB and SQLite (WAL), then times fetching K = 20
random records: first right after dropping the page cache where permitted (cold), then warm.
The result is recorded in docs/store.md.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time

import lance
import lmdb
import numpy as np
import pyarrow as pa

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
ROOT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/store-compare"
L, D, K = 150, 192, 20
rng = np.random.default_rng(0)


def batches(size: int = 2000):
    for start in range(0, N, size):
        n = min(size, N - start)
        yield [f"p{i}" for i in range(start, start + n)], rng.integers(-127, 128, (n, L * D), dtype=np.int8), rng.random((n, L), dtype=np.float32)


def drop_caches() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(fetch, runs: int) -> tuple[float, float]:
    ts = []
    for _ in range(runs):
        q = rng.choice(N, K, replace=False)
        t = time.perf_counter()
        fetch(q)
        ts.append(time.perf_counter() - t)
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 99) * 1e3)


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    t = time.time()
    for i, (ids, rep, sc) in enumerate(batches()):
        table = pa.table({"id": ids, "rep": [r.tobytes() for r in rep], "scale": [s.tobytes() for s in sc]})
        lance.write_dataset(table, f"{ROOT}/l.lance", mode="create" if i == 0 else "append")
    print(f"lance write {time.time() - t:.1f} s")
    t = time.time()
    env = lmdb.open(f"{ROOT}/m.lmdb", map_size=1 << 40)
    for ids, rep, sc in batches():
        with env.begin(write=True) as tx:
            for i, r, s in zip(ids, rep, sc):
                tx.put(i.encode(), r.tobytes() + s.tobytes())
    print(f"lmdb write {time.time() - t:.1f} s")
    t = time.time()
    con = sqlite3.connect(f"{ROOT}/s.db")
    con.execute("pragma journal_mode=wal")
    con.execute("create table p(id text primary key, rep blob, scale blob)")
    for ids, rep, sc in batches():
        with con:
            con.executemany("insert into p values(?,?,?)", [(i, r.tobytes(), s.tobytes()) for i, r, s in zip(ids, rep, sc)])
    print(f"sqlite write {time.time() - t:.1f} s")

    ds = lance.dataset(f"{ROOT}/l.lance")
    ds.create_scalar_index("id", "BTREE")
    ds = lance.dataset(f"{ROOT}/l.lance")
    tx = env.begin()
    engines = {
        "lance, id B-tree filter": lambda q: ds.to_table(columns=["rep", "scale"], filter="id IN (%s)" % ",".join(f"'p{i}'" for i in q)),
        "lance, take by row": lambda q: ds.take(sorted(q.tolist()), columns=["rep", "scale"]),
        "lmdb get": lambda q: [tx.get(f"p{i}".encode()) for i in q],
        "sqlite primary key": lambda q: con.execute("select rep, scale from p where id in (%s)" % ",".join("?" * len(q)), [f"p{i}" for i in q]).fetchall(),
    }
    print(f"{N:,} records, K = {K}: p50 / p99 ms")
    for name, fetch in engines.items():
        cold = drop_caches()
        c = timed(fetch, 50)
        w = timed(fetch, 200)
        print(f"{name:26s} cold{'' if cold else ' (cache not dropped)'} {c[0]:.2f} / {c[1]:.2f}   warm {w[0]:.2f} / {w[1]:.2f}")
    for name in ("l.lance", "m.lmdb", "s.db"):
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(f"{ROOT}/{name}") for f in fs) if os.path.isdir(f"{ROOT}/{name}") else os.path.getsize(f"{ROOT}/{name}")
        print(f"{name}: {size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
