"""The chunked, threaded quantizer paths (qexport.quantize.chunks) against the straightforward
whole-array formulas, bit for bit.

The reference functions below are the plain numpy formulas the quantizers used before they were
chunked (one expression over the whole tensor, float64 intermediates).  Every fast path must give
exactly their results -- codes, scales, zero points, deltas, alphas, counts, packed words, error
statistics, including dtypes and shapes -- on many shapes, with tiny blocks (so that rows are cut
into many blocks and numpy's pairwise summation tree is rebuilt from pieces) and several threads.

Ternarization is checked against the per-channel float64 (fsum) transcription of the TWN rule shared with
tests/test_quant_ternary.py (tests/references.py: check_ternary; not a copy of
qexport/quantize/ternary.py), and, for the chunking itself, bit for bit against the same call with
one whole-row block on one thread (the result must not depend on the block size or thread count).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qexport.encode import pack
from qexport.quantize import affine, binary, chunks, ternary
from qexport.quantize.dequantize import dequantize
from qexport.quantize.metrics import error_stats
from references import check_ternary

F32_MAX = float(np.finfo(np.float32).max)
TINY = np.float32(np.finfo(np.float32).tiny)

# ------------------------------------------------------------------ straightforward formulas


def ref_affine(w, bits, per_channel, mode):
    qmax = 2**bits - 1
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    wmin, wmax = rows.min(axis=1), rows.max(axis=1)
    if mode == "round":
        lo, hi = np.minimum(wmin, 0).astype(np.float64), np.maximum(wmax, 0).astype(np.float64)
        scale = ((hi - lo) / qmax).astype(np.float32)
        scale = np.where(scale < TINY, TINY, scale)
        zp = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax)
    else:
        with np.errstate(over="ignore", under="ignore"):
            scale = (wmax - wmin) / np.float32(qmax)
        bad = ~np.isfinite(scale) | (scale == 0)
        if bad.any():
            fb = ((wmax.astype(np.float64) - wmin.astype(np.float64)) / qmax).astype(np.float32)
            scale = np.where(bad, np.where(fb < TINY, TINY, fb), scale)
        with np.errstate(over="ignore"):
            initial = np.float32(0) - wmin / scale
        zp = np.trunc(np.where(initial < 0, 0, np.where(initial > qmax, qmax, initial)))
    const = wmin == wmax
    scale = np.where(const, np.where(wmin == 0, np.float32(1), np.abs(wmin)), scale).astype(np.float32)
    zp = np.where(const, (wmin < 0).astype(np.float64), zp).astype(np.int32)
    raw = np.rint(rows.astype(np.float64) / scale.astype(np.float64)[:, None]) + zp[:, None]
    q = np.clip(raw, 0, qmax)
    if mode == "truncate":
        with np.errstate(over="ignore"):
            v = zp.astype(np.float32)[:, None] + rows / scale[:, None]
        q = np.where(const[:, None], q, np.rint(np.clip(v, 0, qmax)))
        raw = np.where(const[:, None], raw, np.rint(v))
    saturated = int(np.count_nonzero((raw < 0) | (raw > qmax)))
    codes = q.astype(np.uint8 if bits <= 8 else np.uint16).reshape(w.shape)
    if not per_channel:
        scale, zp = scale.reshape(()), zp.reshape(())
    return codes, scale, zp, saturated


def ref_quantize_with(w, scale, zp, bits):
    s = np.asarray(scale, np.float32)
    z = np.asarray(zp, np.int64)
    if s.ndim == 1:
        s, z = s.reshape((-1,) + (1,) * (w.ndim - 1)), z.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.clip(np.rint(w.astype(np.float64) / s.astype(np.float64)) + z, 0, 2**bits - 1)
    return q.astype(np.uint8 if bits <= 8 else np.uint16)


def ref_dequantize(codes, scale, zp):
    s = np.asarray(scale, np.float32)
    z = np.asarray(zp, np.int64)
    if s.ndim == 1:
        s, z = s.reshape((-1,) + (1,) * (codes.ndim - 1)), z.reshape((-1,) + (1,) * (codes.ndim - 1))
    out = s.astype(np.float64) * (codes.astype(np.int64) - z).astype(np.float64)
    return np.clip(out, -F32_MAX, F32_MAX).astype(np.float32)


def ref_binarize(w):
    return np.where(w > 0, np.int8(1), np.int8(-1)).astype(np.int8)


def ref_binary_alpha(w):
    return np.abs(w.reshape(w.shape[0], -1).astype(np.float64)).mean(axis=1).astype(np.float32)


def ref_pack_binary(codes, word_bits, layout):
    flat = np.ascontiguousarray(pack.to_layout(codes, layout)).reshape(codes.shape[0], -1)
    o, n = flat.shape
    nw = -(-n // word_bits)
    padded = np.zeros((o, nw * word_bits), np.uint8)
    padded[:, :n] = flat == 1
    by = np.packbits(padded, axis=1, bitorder="little")
    dtype = pack.WORD_DTYPES[word_bits]
    return by.view(np.dtype(dtype).newbyteorder("<")).astype(dtype), n


def ref_error_stats(w, deq):
    w64, e64 = w.astype(np.float64), w.astype(np.float64) - deq.astype(np.float64)
    noise, signal = float(np.sum(e64 * e64)), float(np.sum(w64 * w64))
    max_err = float(np.max(np.abs(e64)))
    if noise == 0.0:
        return None, max_err
    if signal == 0.0:
        return float("-inf"), max_err
    return float(10.0 * np.log10(signal / noise)), max_err


def whole_block_ternarize(w, per_channel, ratio):
    """The same call with blocks larger than any row and one thread: no row is cut."""
    with chunks.configured(chunk=max(1, w.size), threads=1):
        return ternary.ternarize(w, per_channel, ratio)


def assert_same_ternary(a, b) -> None:
    assert same(a.codes, b.codes) and same(a.delta, b.delta) and same(a.alpha, b.alpha)
    assert a.empty_channels == b.empty_channels


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


# ------------------------------------------------------------------ data

SHAPES = [(1,), (7,), (3, 1), (1, 300), (2, 129), (5, 8), (4, 3, 3, 3), (2, 1000), (3, 2047), (1, 5000),
          (16, 16, 3, 3), (10, 64), (2, 3, 5, 7), (1, 1, 1, 1), (6, 250), (1, 20000)]  # fmt: skip
CONFIGS = [(1, 1), (5, 2), (8, 3), (64, 2), (200, 1), (1000, 2), (None, 2)]  # (chunk elements, threads)


def weights(shape, seed, kind):
    """float32 weights whose float64 sums depend on the summation order (mixed magnitudes)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    if kind == "mixed":
        w *= (10.0 ** rng.integers(-8, 9, shape)).astype(np.float32)
    elif kind == "zeros":
        w[rng.random(shape) < 0.4] = 0.0
        w[(0,) * (len(shape) - 1)] = 0.0  # a zero channel (or a zero run)
    elif kind == "constant":
        w[...] = np.float32(rng.choice([0.0, -0.25, 3.0]))
    elif kind == "extreme":
        w *= np.float32(3e37)
    elif kind == "subnormal":
        w *= np.float32(1e-42)
    else:
        w *= np.float32(0.05)
    return w


KINDS = ["normal", "mixed", "zeros", "constant", "extreme", "subnormal"]
CASES = [(shape, kind, cfg) for i, shape in enumerate(SHAPES) for j, kind in enumerate(KINDS)
         for cfg in (CONFIGS[(i + j) % len(CONFIGS)], CONFIGS[(i + 3 * j + 1) % len(CONFIGS)])]  # fmt: skip


def case_id(case):
    shape, kind, (chunk, threads) = case
    return f"{'x'.join(map(str, shape))}-{kind}-c{chunk}-t{threads}"


# ------------------------------------------------------------------ fast paths == formulas


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fast_paths_equal_the_straightforward_formulas(case):
    shape, kind, (chunk, threads) = case
    w = weights(shape, hash((shape, kind)) % 2**32, kind)
    with chunks.configured(chunk=chunk, threads=threads):
        for bits in (2, 8, 16):
            for per_channel in (False, True):
                for mode in ("round", "truncate"):
                    res = affine.affine_quantize(w, bits, per_channel, mode)
                    codes, scale, zp, sat = ref_affine(w, bits, per_channel, mode)
                    assert same(res.codes, codes) and same(res.scale, scale) and same(res.zero_point, zp)
                    assert res.saturated == sat
                    assert same(dequantize(res.codes, res.scale, res.zero_point),
                                ref_dequantize(res.codes, res.scale, res.zero_point))  # fmt: skip
                    assert same(affine.quantize_with(w, res.scale, res.zero_point, bits),
                                ref_quantize_with(w, res.scale, res.zero_point, bits))  # fmt: skip
        assert same(binary.binarize(w), ref_binarize(w))
        assert same(binary.binary_alpha(w), ref_binary_alpha(w))
        assert same(binary.binary_alpha(w, per_channel=False), np.asarray(np.mean(np.abs(w, dtype=np.float64)), np.float32))
        assert binary.count_exact_zeros(w) == int(np.count_nonzero(w == 0))
        for per_channel in (True, False):
            for ratio in (0.7, 0.0, 1.0):
                res = ternary.ternarize(w, per_channel, ratio)
                check_ternary(w, per_channel, ratio, res)
                assert_same_ternary(res, whole_block_ternarize(w, per_channel, ratio))
        b = binary.binarize(w)
        for word_bits in (8, 32, 64):
            for layout in ("oihw", "ohwi"):
                words, n = pack.pack_binary(b, word_bits, layout)
                ref_words, ref_n = ref_pack_binary(b, word_bits, layout)
                assert same(words, ref_words) and n == ref_n
        deq = dequantize(*[getattr(affine.affine_quantize(w, 4, True), k) for k in ("codes", "scale", "zero_point")])
        assert error_stats(w, deq) == ref_error_stats(w, deq)
        assert error_stats(w, b.astype(np.float32)) == ref_error_stats(w, b.astype(np.float32))


F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
SPECIAL = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-40, float(TINY), 3e38, -3e38, F32_MAX, -F32_MAX, 1.0, -1.0])
ELEMENTS = st.one_of(F32, st.floats(-1.0, 1.0, width=32), SPECIAL)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=40), elements=ELEMENTS),
       st.sampled_from([1, 3, 8, 50]), st.sampled_from([1, 2, 3]), st.sampled_from([2, 8, 16]), st.booleans(),
       st.sampled_from(["round", "truncate"]))  # fmt: skip
def test_fast_paths_on_arbitrary_values(w, chunk, threads, bits, per_channel, mode):
    with chunks.configured(chunk=chunk, threads=threads):
        res = affine.affine_quantize(w, bits, per_channel, mode)
        codes, scale, zp, sat = ref_affine(w, bits, per_channel, mode)
        assert same(res.codes, codes) and same(res.scale, scale) and same(res.zero_point, zp)
        assert res.saturated == sat
        assert same(dequantize(res.codes, res.scale, res.zero_point), ref_dequantize(codes, scale, zp))
        assert same(binary.binarize(w), ref_binarize(w)) and same(binary.binary_alpha(w), ref_binary_alpha(w))
        t = ternary.ternarize(w, per_channel)
        check_ternary(w, per_channel, 0.7, t)
        assert_same_ternary(t, whole_block_ternarize(w, per_channel, 0.7))


def test_saturation_and_clamping_are_exercised():
    """Rows where rounding pushes an end code out of 0..qmax (counted, clamped) and rows where it does not."""
    rng = np.random.default_rng(11)
    seen = 0
    for seed in range(300):
        w = weights((4, int(rng.integers(2, 400))), seed, "mixed" if seed % 2 else "normal")
        with chunks.configured(chunk=16, threads=2):
            res = affine.affine_quantize(w, 8, bool(seed % 3), "round" if seed % 5 else "truncate")
        codes, scale, zp, sat = ref_affine(w, 8, bool(seed % 3), "round" if seed % 5 else "truncate")
        assert same(res.codes, codes) and res.saturated == sat
        seen += sat > 0
    assert seen > 0  # the clamping branch ran


# ------------------------------------------------------------------ pairwise sums


def naive_row_sums(grid, parts):
    p = grid._parts(parts, np.float64)
    return p if grid.tree is None else p.sum(axis=1)


@pytest.mark.parametrize("rows,n", [(1, 129), (1, 1000), (3, 4097), (2, 100_003), (5, 777), (1, 262_145)])
@pytest.mark.parametrize("chunk", [1, 8, 100, 4096, None])
def test_row_sums_reproduce_numpy_pairwise_summation(rows, n, chunk):
    rng = np.random.default_rng(n)
    x = np.abs(rng.standard_normal((rows, n)) * 10.0 ** rng.integers(-6, 7, (rows, n)))
    grid = chunks.Grid(rows, n, chunk)
    assert [b[2] % 8 for b in grid.blocks] == [0] * len(grid.blocks)  # cuts at multiples of 8
    parts = [np.add.reduce(x[r0:r1, c0:c1], axis=1) for r0, r1, c0, c1 in grid.blocks]
    got = grid.row_sums(parts)
    assert same(got, np.add.reduce(x, axis=1))
    assert same(got, x.sum(axis=1))


def test_row_sums_test_data_is_sensitive_to_the_order():
    """Adding the same leaves in another order changes the float64 sums of such data (so the
    tests above would catch an order that is not numpy's)."""
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal((50, 5000)) * 10.0 ** rng.integers(-6, 7, (50, 5000)))
    grid = chunks.Grid(50, 5000, 100)
    parts = [np.add.reduce(x[r0:r1, c0:c1], axis=1) for r0, r1, c0, c1 in grid.blocks]
    assert same(grid.row_sums(parts), x.sum(axis=1))
    assert np.count_nonzero(naive_row_sums(grid, parts) != x.sum(axis=1)) >= 5


def test_pairwise_leaves_cover_the_run():
    for n in list(range(1, 300)) + [1000, 4096, 65537, 10**6 + 3]:
        for leaf in (1, 7, 128, 1000, 1 << 17):
            leaves, _ = chunks.pairwise_leaves(n, leaf)
            assert leaves[0][0] == 0 and leaves[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(leaves, leaves[1:]))
            assert all(stop - start <= max(leaf, 128) for start, stop in leaves)


# ------------------------------------------------------------------ default sizes, threads, errors


def test_default_block_size_and_threads_on_big_tensors():
    """Tensors larger than the default block, with the default configuration and 1 vs 4 threads."""
    rng = np.random.default_rng(5)
    for shape in [(1, 700_001), (3, 300_000), (64, 9000)]:
        w = (rng.standard_normal(shape) * np.float32(0.03)).astype(np.float32)
        out = []
        for threads in (1, 4):
            with chunks.configured(threads=threads):
                out.append((affine.affine_quantize(w), affine.affine_quantize(w, 8, True), ternary.ternarize(w),
                            ternary.ternarize(w, False), binary.binary_alpha(w), binary.binarize(w)))  # fmt: skip
        for got in out:
            a, ac, t, tt, alpha, b = got
            assert same(a.codes, ref_affine(w, 8, False, "round")[0]) and same(ac.codes, ref_affine(w, 8, True, "round")[0])
            assert same(alpha, ref_binary_alpha(w)) and same(b, ref_binarize(w))
        for res, pc in ((out[0][2], True), (out[0][3], False)):
            check_ternary(w, pc, 0.7, res)  # the transcription once ...
        assert_same_ternary(out[0][2], out[1][2])  # ... and 4 threads give what 1 gives
        assert_same_ternary(out[0][3], out[1][3])


def test_non_contiguous_and_other_dtypes_use_the_same_formulas():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((40, 30, 3)).astype(np.float32)
    for w in (base.transpose(1, 0, 2), base[::2, ::3], np.asfortranarray(base), base.astype(np.float64),
              base.astype(np.float16)):  # fmt: skip
        with chunks.configured(chunk=7, threads=2):
            w32 = np.asarray(w, np.float32)
            res = affine.affine_quantize(w, 8, True)
            assert same(res.codes, ref_affine(w32, 8, True, "round")[0])
            assert same(binary.binarize(w), ref_binarize(w32))
            t = ternary.ternarize(w)
            check_ternary(w32, True, 0.7, t)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_in_a_late_block_are_rejected(bad):
    w = np.ones((3, 5000), np.float32)
    w[2, 4999] = bad
    with chunks.configured(chunk=64, threads=2):
        for fn in (affine.affine_quantize, lambda x: affine.affine_quantize(x, 8, True), binary.binarize,
                   binary.binary_alpha, ternary.ternarize, lambda x: ternary.ternarize(x, False)):  # fmt: skip
            with pytest.raises(ValueError, match="non-finite"):
                fn(w)
        with pytest.raises(ValueError, match="finite"):
            affine.quantize_with(w, np.float32(0.1), 0, 8)


def test_invalid_binary_codes_in_a_late_block_are_rejected():
    c = np.ones((2, 5000), np.int8)
    c[1, 4000] = 0
    with chunks.configured(chunk=64, threads=2), pytest.raises(ValueError, match="-1 or \\+1"):
        pack.pack_binary(c)


def test_run_keeps_order_and_reraises():
    with chunks.configured(threads=3):
        assert chunks.run(lambda i: i * i, list(range(100))) == [i * i for i in range(100)]

        def boom(i):
            if i == 37:
                raise KeyError("boom")
            return i

        with pytest.raises(KeyError):
            chunks.run(boom, list(range(100)))
        assert chunks.run(lambda i: i, [5]) == [5]


def test_configuration():
    with chunks.configured(chunk=10, threads=3):
        assert chunks.chunk_size() == 10 and chunks.thread_count() == 3
        with chunks.configured(threads=1):
            assert chunks.thread_count() == 1 and chunks.chunk_size() == 10
    assert chunks.chunk_size() == chunks.CHUNK
    code = "from qexport.quantize import chunks; print(chunks.thread_count())"
    for value, expect in (("1", "1"), ("3", "3"), ("junk", None)):
        env = dict(os.environ, QEXPORT_THREADS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == (expect or out.stdout.strip()) and int(out.stdout) >= 1


def test_scratch_buffers_are_per_thread_and_reused():
    a = chunks.scratch((4, 5), np.float64)
    b = chunks.scratch((2, 3), np.float64)
    assert np.shares_memory(a, b) and b.shape == (2, 3)
    assert not np.shares_memory(a, chunks.scratch((4, 5), np.float64, slot=1))
    others = chunks.run(lambda _: chunks.scratch((4, 5), np.float64), [0, 1, 2, 3])
    assert all(x.shape == (4, 5) for x in others)
