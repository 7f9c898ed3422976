"""Chunked, optionally threaded evaluation of numpy kernels over big arrays.

The quantizers work on a tensor viewed as float32 rows (R, n): one row per output channel, or a
single row per tensor.  A `Grid` cuts those rows into blocks of about `chunk_size()` elements so
that every float64 intermediate of a block stays in cache, and `Grid.map` runs a kernel on every
block, on `thread_count()` threads (numpy releases the GIL inside ufunc loops).

Determinism: kernels only write their own block of the output and return per-block partial
results; `Grid.map` returns them in block order whatever the thread timing, and they are combined
in a fixed order.  Sums must stay bit-identical to numpy's own `np.add.reduce(rows64, axis=1)`,
which sums each row pairwise (numpy's `pairwise_sum`: a row of n > 128 elements is split at
n2 = n // 2 rounded down to a multiple of 8, recursively; shorter runs use 8 interleaved
accumulators).  So:
  * rows of n <= chunk are never split: a block holds whole rows and reduces them with
    `np.add.reduce(block64, axis=1)`, exactly the per-row computation numpy does on the whole;
  * a longer row is cut at the nodes of numpy's pairwise tree (`pairwise_leaves`), each leaf is
    summed by numpy (giving that node's exact value), and `Grid.row_sums` adds the leaves back up
    along the same tree.
Min, max and counts are exact in any order.

Configuration: QEXPORT_THREADS (environment) sets the thread count (default: the CPUs this
process may use, at most 8; 1 disables threading); `configured(chunk=..., threads=...)` overrides
both for a block of code (tests use tiny chunks to exercise the splitting on small arrays).
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

CHUNK = 1 << 18  # elements per block: 2 MB of float64 scratch per thread (fits the L3 cache)
PW_BLOCK = 128  # numpy's PW_BLOCKSIZE: pairwise_sum never splits a run this short
_MAX_THREADS = 8

_override: dict = {"chunk": None, "threads": None}
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_local = threading.local()


def chunk_size() -> int:
    return int(_override["chunk"] or CHUNK)


def thread_count() -> int:
    if _override["threads"]:
        return int(_override["threads"])
    env = os.environ.get("QEXPORT_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_THREADS))


@contextmanager
def configured(chunk: int | None = None, threads: int | None = None):
    """Temporarily set the block size (elements) and/or the thread count."""
    saved = dict(_override)
    if chunk is not None:
        _override["chunk"] = max(1, int(chunk))
    if threads is not None:
        _override["threads"] = max(1, int(threads))
    try:
        yield
    finally:
        _override.update(saved)


def scratch(shape, dtype, slot: int = 0) -> np.ndarray:
    """A reusable per-thread buffer of `shape` (contents undefined); `slot` tells buffers apart."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    if size > 2 * max(CHUNK, chunk_size()):  # not a block: do not keep it alive
        return np.empty(shape, dtype)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (slot, dtype.str)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(max(size, 1), dtype)
    return buf[:size].reshape(shape)


def _reset_pool() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):  # a forked child has no pool threads: start afresh
    os.register_at_fork(after_in_child=_reset_pool)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qexport-chunk")
            _pool_size = workers
        return _pool


def run(kernel, tasks: list) -> list:
    """[kernel(t) for t in tasks], on up to thread_count() threads; results in task order.

    Workers (the calling thread is one of them) take the next task from a shared counter, so a
    slow thread does not hold the others up; the first exception is re-raised.
    """
    threads = min(thread_count(), len(tasks))
    if threads <= 1:
        return [kernel(t) for t in tasks]
    results: list = [None] * len(tasks)
    counter = itertools.count()
    failed = threading.Event()

    def worker():
        try:
            for i in iter(counter.__next__, None):  # next() on itertools.count is atomic (GIL)
                if i >= len(tasks) or failed.is_set():
                    return
                results[i] = kernel(tasks[i])
        except BaseException:
            failed.set()
            raise

    futures = [_executor(threads - 1).submit(worker) for _ in range(threads - 1)]
    error = None
    try:
        worker()
    except BaseException as exc:  # wait for the other workers before re-raising
        error = exc
    for f in futures:
        exc = f.exception()
        error = error or exc
    if error is not None:
        raise error
    return results


def count_nonzero_rows(x: np.ndarray) -> np.ndarray:
    """np.count_nonzero(x, axis=1) for a 2-D block; a few rows are counted one by one
    (np.count_nonzero without an axis is several times faster than with one)."""
    if x.shape[0] <= 8:
        return np.array([np.count_nonzero(row) for row in x], dtype=np.intp)
    return np.count_nonzero(x, axis=1)


def pairwise_leaves(n: int, leaf: int):
    """(leaves, tree): numpy's pairwise-summation tree of a run of n elements, cut into leaves of
    at most max(leaf, 128) elements.  leaves: list of (start, stop); tree: a leaf index, or a pair
    (left, right) of subtrees whose values numpy adds as left + right."""
    leaves: list[tuple[int, int]] = []

    def build(start: int, size: int):
        if size <= leaf or size <= PW_BLOCK:
            leaves.append((start, start + size))
            return len(leaves) - 1
        n2 = size // 2
        n2 -= n2 % 8
        left = build(start, n2)
        return (left, build(start + n2, size - n2))

    return leaves, build(0, n)


def _combine(tree, parts: np.ndarray):
    if isinstance(tree, int):
        return parts[:, tree]
    return _combine(tree[0], parts) + _combine(tree[1], parts)


class Grid:
    """Blocks (r0, r1, c0, c1) covering float rows (R, n): whole rows grouped when n <= chunk,
    otherwise every row cut into the leaves of numpy's pairwise tree of n (module docstring)."""

    def __init__(self, rows: int, n: int, chunk: int | None = None):
        chunk = chunk or chunk_size()
        self.rows, self.n = int(rows), int(n)
        if self.n <= chunk:
            per = max(1, chunk // max(self.n, 1))
            self.tree = None
            self.blocks = [(r, min(r + per, self.rows), 0, self.n) for r in range(0, self.rows, per)]
        else:
            leaves, self.tree = pairwise_leaves(self.n, chunk)
            self.nleaves = len(leaves)
            self.blocks = [(r, r + 1, c0, c1) for r in range(self.rows) for c0, c1 in leaves]

    def map(self, kernel) -> list:
        """[kernel(block) for block in self.blocks], threaded, in block order."""
        return run(kernel, self.blocks)

    def _parts(self, parts, dtype) -> np.ndarray:
        flat = np.concatenate([np.asarray(p, dtype).reshape(-1) for p in parts])
        return flat if self.tree is None else flat.reshape(self.rows, self.nleaves)

    def row_sums(self, parts) -> np.ndarray:
        """float64 (R,): per-block row sums (each (r1 - r0,), from np.add.reduce(block64, axis=1))
        added up exactly as np.add.reduce(rows64, axis=1) adds them."""
        p = self._parts(parts, np.float64)
        return p if self.tree is None else _combine(self.tree, p)

    def row_reduce(self, parts, ufunc, dtype) -> np.ndarray:
        """(R,): per-block row results combined with an order-free ufunc (minimum, maximum, add on ints)."""
        p = self._parts(parts, dtype)
        return p if self.tree is None else ufunc.reduce(p, axis=1)
