"""Layouts and bit packing (README "Bit packing"), and the popcount dot products they serve.

Layout: "oihw" is PyTorch's order (identity); "ohwi" (CMSIS-NN / TFLite / LCE) transposes a 4-D
tensor with (0, 2, 3, 1); tensors of other ranks are the same in both layouts.

Every output channel o (axis 0) is packed separately along its flattened reduction axis of
n = prod(shape[1:]) elements, in the chosen layout.  Words are unsigned integers of word_bits
8/16/32/64 bits, returned as native numpy integers (their *values* define the packing, not any
byte order); element k goes to word k // word_bits, bit k % word_bits (LSB-first); padding bits
are 0; the result has shape (O, ceil(n / word_bits)).

    binary            bit 1 <-> +1, bit 0 <-> -1
    ternary "planes"  two binary-layout planes: "nonzero" (t != 0) and "positive" (t == +1)
    ternary "codes"   2-bit codes 00 = 0, 01 = +1, 11 = -1; element k at bits 2*(k mod (W/2)) and
                      2*(k mod (W/2)) + 1 of word k // (W/2); padding 00
    ternary "base3"   5 trits per byte: byte = sum_j d_j * 3**j (j = 0..4), digit d = t mod 3
                      (0 -> 0, +1 -> 1, -1 -> 2), element k = byte k // 5, digit k % 5; padding
                      digit 0; uint8 of shape (O, ceil(n / 5)); word_bits does not apply

Dot products (a = binary activations, packed like binary weights, shape (..., nw)):
    popcount_dot: sum_k a_k * w_k = 2 * popcount(XNOR(a, w) masked to n bits) - n
                                  = n - 2 * popcount(XOR(a, w) masked to n bits)
    ternary_dot:  sum_k a_k * t_k = popcount(nz) - 2 * popcount(nz & (a XOR pos))
Unpacking rejects words whose padding bits or codes are not valid (ValueError).
"""

from __future__ import annotations

import numpy as np

from ..quantize import chunks

LAYOUTS = ("oihw", "ohwi")
TERNARY_MODES = ("planes", "codes", "base3")
WORD_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _word_dtype(word_bits: int):
    if word_bits not in WORD_DTYPES:
        raise ValueError(f"word_bits must be one of {tuple(WORD_DTYPES)}, got {word_bits!r}")
    return WORD_DTYPES[word_bits]


def to_layout(w, layout: str) -> np.ndarray:
    """`w` (PyTorch order) in `layout`: ohwi transposes 4-D tensors with (0, 2, 3, 1)."""
    _check_layout(layout)
    w = np.asarray(w)
    return w.transpose(0, 2, 3, 1) if layout == "ohwi" and w.ndim == 4 else w


def from_layout(w, layout: str, shape) -> np.ndarray:
    """Inverse of to_layout: `w` (in `layout`, any shape with the same size) back to `shape` (OIHW)."""
    _check_layout(layout)
    shape = tuple(int(d) for d in shape)
    w = np.asarray(w)
    if layout == "ohwi" and len(shape) == 4:
        o, i, h, k = shape
        return w.reshape(o, h, k, i).transpose(0, 3, 1, 2)
    return w.reshape(shape)


def _flat(codes, layout: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim == 0:
        raise ValueError("codes need an output-channel axis")
    return np.ascontiguousarray(to_layout(codes, layout)).reshape(codes.shape[0], -1)


def _pack_bits(bits: np.ndarray, word_bits: int) -> np.ndarray:
    """bool/0-1 array (O, n) -> words (O, ceil(n / word_bits)), LSB-first."""
    dtype = _word_dtype(word_bits)
    o, n = bits.shape
    nw = -(-n // word_bits)
    padded = np.zeros((o, nw * word_bits), dtype=np.uint8)
    padded[:, :n] = bits
    by = np.packbits(padded, axis=1, bitorder="little")  # (O, nw * word_bits / 8), contiguous
    return by.view(np.dtype(dtype).newbyteorder("<")).astype(dtype)


def _unpack_bits(words, n: int, word_bits: int | None = None) -> np.ndarray:
    """words (O, nw) -> uint8 bits (O, n); ValueError if a padding bit is set."""
    words = np.asarray(words)
    if word_bits is None:
        word_bits = words.dtype.itemsize * 8
    dtype = _word_dtype(word_bits)
    if words.dtype != dtype or words.ndim != 2 or words.shape[1] != -(-n // word_bits):
        raise ValueError(f"expected {np.dtype(dtype).name} words of shape (O, {-(-n // word_bits)}), "
                         f"got {words.dtype} {words.shape}")  # fmt: skip
    by = np.ascontiguousarray(words.astype(np.dtype(dtype).newbyteorder("<"))).view(np.uint8)
    bits = np.unpackbits(by.reshape(words.shape[0], -1), axis=1, bitorder="little")
    if bits[:, n:].any():
        raise ValueError("padding bits are not zero")
    return bits[:, :n]


def pack_binary(codes, word_bits: int = 32, layout: str = "oihw"):
    """(words, n): codes int8 +-1 of shape [O, ...] packed per output channel; see module docstring."""
    flat = _flat(codes, layout)
    if flat.dtype == np.int8 and flat.size:
        return _pack_binary_int8(flat, _word_dtype(word_bits), word_bits), flat.shape[1]
    if not np.isin(flat, (-1, 1)).all():
        raise ValueError("binary codes must be -1 or +1")
    return _pack_bits(flat == 1, word_bits), flat.shape[1]


def _pack_binary_int8(flat: np.ndarray, dtype, word_bits: int) -> np.ndarray:
    """pack_binary for int8 codes (O, n), block by block: the same words as _pack_bits(flat == 1).

    Block columns start at multiples of 8 (chunks.Grid cuts rows at multiples of 8), so each
    block's np.packbits fills whole bytes of the row; the row's last byte gets zero padding bits
    from np.packbits, and the bytes up to the word boundary are zero (np.zeros).
    """
    o, n = flat.shape
    nbytes = -(-n // word_bits) * word_bits // 8
    by = np.empty((o, nbytes), np.uint8) if n == nbytes * 8 else np.zeros((o, nbytes), np.uint8)

    def kernel(b):
        r0, r1, c0, c1 = b
        x = flat[r0:r1, c0:c1]
        one = chunks.scratch(x.shape, np.bool_)
        np.equal(x, 1, out=one)
        valid = np.count_nonzero(one) + np.count_nonzero(x == -1) == x.size
        by[r0:r1, c0 // 8:-(-c1 // 8)] = np.packbits(one, axis=1, bitorder="little")
        return valid

    if not all(chunks.Grid(o, n).map(kernel)):
        raise ValueError("binary codes must be -1 or +1")
    return by.view(np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False)


def unpack_binary(words, n: int, shape, layout: str = "oihw") -> np.ndarray:
    """Exact inverse of pack_binary: int8 codes of `shape` (word size taken from the dtype)."""
    bits = _unpack_bits(words, n)
    return from_layout(bits.astype(np.int8) * 2 - 1, layout, shape).astype(np.int8)


def pack_ternary(codes, word_bits: int = 32, layout: str = "oihw", mode: str = "planes") -> dict:
    """Ternary codes int8 {-1, 0, +1} of shape [O, ...] -> dict of packed arrays (module docstring)."""
    flat = _flat(codes, layout)
    if not np.isin(flat, (-1, 0, 1)).all():
        raise ValueError("ternary codes must be -1, 0 or +1")
    if mode == "planes":
        return {"nonzero": _pack_bits(flat != 0, word_bits), "positive": _pack_bits(flat == 1, word_bits)}
    if mode == "codes":
        pairs = np.stack([flat != 0, flat == -1], axis=2).reshape(flat.shape[0], -1)  # bit 2k, 2k+1
        return {"codes": _pack_bits(pairs, word_bits)}
    if mode == "base3":
        o, n = flat.shape
        digits = np.zeros((o, -(-n // 5) * 5), dtype=np.uint8)
        digits[:, :n] = np.where(flat < 0, 2, flat)
        return {"base3": (digits.reshape(o, -1, 5) * _POW3).sum(axis=2, dtype=np.uint8)}
    raise ValueError(f"ternary mode must be one of {TERNARY_MODES}, got {mode!r}")


def unpack_ternary(packed: dict, n: int, shape, layout: str = "oihw", mode: str = "planes",
                   word_bits: int = 32) -> np.ndarray:  # fmt: skip
    """Exact inverse of pack_ternary: int8 codes of `shape`."""
    if mode == "planes":
        nz = _unpack_bits(packed["nonzero"], n, word_bits)
        pos = _unpack_bits(packed["positive"], n, word_bits)
        if (pos & ~nz).any():
            raise ValueError("'positive' bit set where 'nonzero' is not")
        flat = nz.astype(np.int8) * (pos.astype(np.int8) * 2 - 1)
    elif mode == "codes":
        bits = _unpack_bits(packed["codes"], 2 * n, word_bits)
        low, high = bits[:, 0::2], bits[:, 1::2]
        if (high & ~low).any():
            raise ValueError("invalid 2-bit ternary code 10")
        flat = low.astype(np.int8) - 2 * high.astype(np.int8)  # 00 -> 0, 01 -> +1, 11 -> -1
    elif mode == "base3":
        by = np.asarray(packed["base3"])
        if by.dtype != np.uint8 or by.ndim != 2 or by.shape[1] != -(-n // 5) or (by > 242).any():
            raise ValueError("base3 data must be uint8 (O, ceil(n / 5)) with bytes <= 242")
        digits = (by[:, :, None] // _POW3 % 3).reshape(by.shape[0], -1)
        if digits[:, n:].any():
            raise ValueError("base3 padding digits are not zero")
        flat = np.where(digits[:, :n] == 2, -1, digits[:, :n]).astype(np.int8)
    else:
        raise ValueError(f"ternary mode must be one of {TERNARY_MODES}, got {mode!r}")
    return from_layout(flat, layout, shape).astype(np.int8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each unsigned integer (np.bitwise_count on numpy >= 2.0, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _popcount_table(x)


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _popcount_table(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    by = x.view(np.uint8).reshape(x.shape + (x.dtype.itemsize,))
    return _BYTE_POPCOUNT[by].sum(axis=-1)


def _mask(n: int, nw: int, dtype) -> np.ndarray:
    """Words with exactly the first n bits set (shape (nw,))."""
    word_bits = np.dtype(dtype).itemsize * 8
    bits = np.zeros(nw * word_bits, dtype=np.uint8)
    bits[:n] = 1
    return _pack_bits(bits[None, :], word_bits)[0]


def _check_words(a, w, n: int):
    a, w = np.asarray(a), np.asarray(w)
    if a.dtype != w.dtype or a.dtype not in [np.dtype(d) for d in WORD_DTYPES.values()]:
        raise ValueError(f"activations and weights must be words of the same unsigned dtype, got {a.dtype}, {w.dtype}")
    if w.ndim != 2 or a.shape[-1] != w.shape[1] or not 0 <= n <= w.shape[1] * w.dtype.itemsize * 8:
        raise ValueError(f"incompatible shapes {a.shape}, {w.shape} for n = {n}")
    return a, w, _mask(n, w.shape[1], w.dtype)


def popcount_dot(a_words, w_words, n: int) -> np.ndarray:
    """int64 (..., O): the +-1 dot product of packed activations (..., nw) and weights (O, nw)."""
    a, w, mask = _check_words(a_words, w_words, n)
    diff = (a[..., None, :] ^ w) & mask
    return n - 2 * _popcount(diff).sum(axis=-1)


def ternary_dot(a_words, nonzero, positive, n: int) -> np.ndarray:
    """int64 (..., O): sum_k a_k * t_k for packed binary activations and "planes" ternary weights."""
    a, nz, mask = _check_words(a_words, nonzero, n)
    _, pos, _ = _check_words(a_words, positive, n)
    nz = nz & mask
    return _popcount(nz).sum(axis=-1) - 2 * _popcount(nz & (a[..., None, :] ^ pos)).sum(axis=-1)
