"""The restricted unpickler: CIFAR pickles are loaded without running anything they name.

Real CIFAR batches (Python 2 cPickle, protocol 2) consist of dicts, lists, strings, ints and numpy
arrays, and the only globals they name are the array reconstruction ones.  Those four globals are
admitted and mapped to inert stand-ins defined here, so no numpy code ever runs on the pickle's
state: the array is rebuilt with `np.frombuffer` from a validated integer dtype and the raw bytes.
Python 3 pickles of the same data add two more: at protocols 0-2 `bytes` (the array data, the
'b' typecode) are written as `_codecs.encode(text, 'latin1')`, admitted with the latin-1 encoding
only and evaluated here as `text.encode('latin1')`; at protocol 5 numpy writes
`numpy._core.numeric._frombuffer(buffer, dtype, shape, order)`, rebuilt like `_reconstruct`.
Any other global (or `_codecs.encode` with another encoding) raises UnsafeInputError before
anything is called.
"""

from __future__ import annotations

import io
import pickle
import re

import numpy as np

from ..errors import InputError, UnsafeInputError


class _NdarrayClass:
    """Stands for `numpy.ndarray` inside a pickle: only ever an argument of `_reconstruct`."""

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayClass()
_DTYPE_CODE = re.compile(r"[iu][1248]")
_ENDIANS = frozenset("|<>=")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, str):
        return value
    return None


class _DtypeSpec:
    """`numpy.dtype(code, align, copy)` + BUILD, restricted to plain integer types."""

    def __init__(self, code, align=0, copy=1):
        text = _text(code)
        if text is None or not _DTYPE_CODE.fullmatch(text) or type(align) not in (int, bool) or type(copy) not in (int, bool):
            raise InputError(f"numpy dtype {code!r} is not a plain integer type")
        self.code = text
        self.endian = "|" if text.endswith("1") else "="

    def __setstate__(self, state):
        # (version 3, endian, subarray, names, fields, elsize, alignment, flags), as numpy writes
        # for a simple type; anything else (structured, subarray, object flags) is refused.
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3):
            raise InputError(f"unexpected numpy dtype state {state!r:.80}")
        endian = _text(state[1])
        if endian not in _ENDIANS or state[2:5] != (None, None, None) or state[5:] != (-1, -1, 0):
            raise InputError(f"numpy dtype state {state!r:.80} is not a plain integer type")
        self.endian = endian

    def dtype(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt if self.endian == "|" else dt.newbyteorder(self.endian)


class _ArraySpec:
    """`numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')` + BUILD -> `np.frombuffer`."""

    def __init__(self, subtype, shape, typecode):
        if subtype is not _NDARRAY or shape != (0,) or _text(typecode) != "b":
            raise InputError("unexpected numpy array reconstruction arguments")
        self.array = None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise InputError("unexpected numpy array state")
        shape, spec, fortran, raw = state
        if not isinstance(spec, _DtypeSpec):
            raise InputError("numpy array state without a plain dtype")
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)) or len(shape) > 4:
            raise InputError(f"numpy array shape {shape!r:.60} is not valid")
        if isinstance(raw, str):  # a Python 2 str loaded with encoding='latin1'
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)) or type(fortran) not in (bool, int):
            raise InputError("numpy array state has no raw data")
        dtype = spec.dtype()
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != len(raw):
            raise InputError(f"numpy array of shape {shape} needs {count * dtype.itemsize} bytes, the pickle holds {len(raw)}")
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    @classmethod
    def from_buffer(cls, buf, spec, shape, order):
        """`numpy._core.numeric._frombuffer(buf, dtype, shape, order)` (protocol 5, in-band buffer)."""
        if isinstance(shape, list):
            shape = tuple(shape)
        if _text(order) not in ("C", "F"):
            raise InputError("unexpected numpy array order")
        self = cls(_NDARRAY, (0,), b"b")
        self.__setstate__((shape, spec, _text(order) == "F", bytes(buf) if isinstance(buf, bytearray) else buf))
        return self


def _latin1_encode(text=None, encoding=None, *rest):
    """`_codecs.encode(text, 'latin1')`: how Python 3 pickles `bytes` at protocols 0-2."""
    if rest or not isinstance(text, str) or _text(encoding) not in ("latin1", "latin-1"):
        raise UnsafeInputError(f"refused: the pickle calls _codecs.encode with {encoding!r:.20} (only 'latin1', "
                               f"which Python 3 writes for bytes, is allowed); nothing was executed")  # fmt: skip
    return text.encode("latin1")


def _frombuffer(buf=None, dtype=None, shape=None, order="C", *rest):
    if rest or not isinstance(buf, (bytes, bytearray)):
        raise InputError("unexpected numpy _frombuffer arguments")
    return _ArraySpec.from_buffer(buf, dtype, shape, order)


def _reconstruct(subtype, shape, typecode):
    return _ArraySpec(subtype, shape, typecode)


def _dtype(code, align=0, copy=1):
    return _DtypeSpec(code, align, copy)


# The complete allow-list: what numpy (old and new module names) writes for an ndarray.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle._Unpickler):
    # The pure-Python unpickler (no slower here: the bulk is one large string): the C one grows its
    # memo to the largest BINPUT index it meets, so a 150-byte pickle saying LONG_BINPUT 2**31
    # makes it allocate and zero tens of GB (found by the fuzz target); this one keeps a dict.
    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeInputError(
                f"{self.where}: refused: the pickle asks for {module}.{name}, which CIFAR pickles never "
                "contain (only numpy array reconstruction is allowed); nothing was executed"
            ) from None

    def persistent_load(self, pid):
        raise InputError(f"{self.where}: refused: the pickle uses persistent ids, which CIFAR pickles never contain")


def load_pickle(raw, where: str) -> dict:
    """Unpickle one CIFAR file (bytes or a binary file) with the allow-list; return its dict with
    str keys and numpy arrays.  A file is read directly (one copy fewer than reading it first)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw, where).load()
    except UnsafeInputError as exc:
        if str(exc).startswith(where):
            raise
        raise UnsafeInputError(f"{where}: {exc}") from None
    except InputError as exc:
        if str(exc).startswith(where):
            raise
        raise InputError(f"{where}: {exc}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise InputError(f"{where}: truncated or corrupt pickle ({exc or 'ran out of input'})") from None
    except MemoryError:
        raise InputError(f"{where}: corrupt pickle (asks for more memory than there is)") from None
    except Exception as exc:  # any other failure inside the unpickler is a malformed file
        raise InputError(f"{where}: not a CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: not a CIFAR pickle (top level is {type(obj).__name__}, expected a dict)")
    result = {}
    for key, value in obj.items():
        text = _text(key)
        if text is None:
            raise InputError(f"{where}: not a CIFAR pickle (dict key {key!r:.40} is not a string)")
        if text in result:
            raise InputError(f"{where}: key {text!r} appears twice (as bytes and as str)")
        if isinstance(value, _ArraySpec):
            if value.array is None:
                raise InputError(f"{where}: numpy array {text!r} has no data")
            value = value.array
        elif isinstance(value, _DtypeSpec):
            raise InputError(f"{where}: unexpected bare numpy dtype under {text!r}")
        result[text] = value
    return result
