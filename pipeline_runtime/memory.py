"""The cyclic garbage collector, tuned for a process that allocates millions of short-lived objects.

Decoding builds several Python objects per change (events, cells, dicts) and a
batch keeps up to ``batchSize`` changes alive while the sinks write it. With
CPython's default thresholds (a young collection every 700 net allocations)
the collector then walks the live batch again and again: profiled on a backlog
drain into PostgreSQL, ``gc_collect_main`` took more than half of the decoding
thread's time. The objects of the data path form no reference cycles (reference
counting frees them), so collecting rarely costs nothing in memory; what the
collector still finds (asyncio tracebacks and the like) is freed a little later.

``tune_garbage_collector`` moves everything allocated at start (modules,
schemas, clients) out of the collector's sight (``gc.freeze``) and raises the
young generation's threshold; the older generations keep theirs.
"""

from __future__ import annotations

import gc

#: Net allocations between young-generation collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector(young: int = YOUNG_THRESHOLD) -> None:
    """Freeze what exists now and collect the young generation every ``young`` net allocations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
