"""MATLAB v5 writer (`qexport mat`): one .mat file, or with --split one file per array (seed 000).

Layout of the single file (README "MATLAB / Octave"):

- one variable per tensor, named by `matlab_identifier` (letters, digits, _; <= 63 characters;
  made unique after sanitising and truncation), with its exact class: codes stay
  uint8/uint16/int8, biases int32, kept-float tensors single, packed words uint32/uint64;
- `qexport_names`: N-by-3 cell {original name, MATLAB name, 'tensor' | 'layer'};
- `qexport_layers`: a struct with one field per quantized layer, each a struct holding the
  layer's name, scheme, bits, per_channel, the MATLAB names of its weight/bias variables and
  every parameter (scale, zero_point, multiplier, shift, scale_error, input_gain, alpha, delta,
  n, threshold, flip) in its own class; per-channel values are 1-by-C rows;
- `qexport_tensors`: a struct with one field per tensor variable (same name) describing it:
  original name, layer, role, scheme, layout, dtype, full shape (MATLAB drops trailing
  singleton dimensions: a 1x1 conv's 4-D weight shows as C_out x C_in), and `attrs` (packing:
  word_bits, bit_order, n, encoding, ...);
- `qexport_provenance`: generator, source file name and sha256, architecture, options;
- `qexport_conv_order`: 'OIHW' (PyTorch's order, the default), 'OHWI' (--layout ohwi), or
  'HWIO' (--matlab-order: H x W x C_in x C_out, MATLAB's convolution2dLayer order).

MATLAB writes a creation time into the 116-byte header text; qexport writes a fixed text instead,
so the same input and options give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..atomic import atomic_dir, atomic_file
from ..errors import OutputError
from ..encode.arrange import EncodedModel
from ..encode.files import file_stems
from ..encode.records import layer_facts, param_items
from ..model import ExportTensor, QuantLayer
from ..names import comment_text, matlab_identifier, unique
from .base import WriterPlugin

RESERVED = ("qexport_names", "qexport_layers", "qexport_tensors", "qexport_provenance", "qexport_conv_order")
HEADER_TEXT = f"MATLAB 5.0 MAT-file, Platform: any, Created by: qexport {__version__} (no timestamp)"
HEADER_LEN = 116  # the descriptive text; then 8 bytes subsystem offset, version, endian mark
ONED_AS = "row"  # scipy's default, as in seed 000's files: 1-D arrays become 1-by-N rows
MAX_BYTES = 2**31 - 1  # a v5 variable's size field is 32 bits
# Permutation from a 4-D weight layout to MATLAB's H x W x C_in x C_out.
TO_HWIO = {"oihw": (2, 3, 1, 0), "ohwi": (1, 2, 3, 0)}
SPLIT_VAR = "array"
SPLIT_INDEX = "qexport_index.txt"


def _text(value: str) -> str:
    """A MATLAB char value.  Any Unicode text is kept (scipy stores it as UTF-8; MATLAB and
    scipy read it back exactly, Octave 7 only handles the ASCII ones)."""
    return str(value)


def _check_array(name: str, a: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
        raise OutputError(f"{path}: tensor {name!r} has dtype {a.dtype}, which a MATLAB v5 file cannot hold")
    if a.nbytes > MAX_BYTES:
        raise OutputError(f"{path}: tensor {name!r} is {a.nbytes} bytes; MATLAB v5 variables are limited to 2 GB "
                          f"(use `qexport h5` or `qexport npy`)")  # fmt: skip
    return a


def matlab_array(t: ExportTensor, matlab_order: bool) -> tuple[np.ndarray, str]:
    """The array as written and its layout name: conv weights permuted to HWIO with --matlab-order."""
    if matlab_order and t.data.ndim == 4 and t.layout in TO_HWIO:
        return np.ascontiguousarray(np.transpose(t.data, TO_HWIO[t.layout])), "hwio"
    return t.data, t.layout


def conv_order(qmodel: EncodedModel, matlab_order: bool) -> str:
    if matlab_order:
        return "HWIO"
    return qmodel.encoding.layout.upper()


def _meta_value(value):
    """Attribute values (Python scalars, strings, tuples) as MATLAB values: numbers double, text char."""
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(bool(value))
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, (int, float)):
        return np.asarray(float(value))
    if isinstance(value, (tuple, list)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return np.asarray([float(v) for v in value], dtype=np.float64).reshape(1, -1)
        return _text(", ".join(map(str, value)))
    return _text(str(value))


def _fields(items: list[tuple[str, object]]) -> dict:
    """A struct from (key, value) pairs, keys made valid and unique MATLAB field names."""
    keys = unique([k for k, _ in items], matlab_identifier, maxlen=63)
    return {k: v for k, (_, v) in zip(keys, items)}


def variable_names(qmodel: EncodedModel) -> list[str]:
    """MATLAB variable name of each tensor, in order (the reserved qexport_* names are never used)."""
    names = unique(list(RESERVED) + [t.name for t in qmodel.tensors], matlab_identifier, maxlen=63)
    return names[len(RESERVED):]


def layer_fields(qmodel: EncodedModel) -> list[str]:
    return unique([q.name for q in qmodel.layers], matlab_identifier, maxlen=63)


def _layer_struct(q: QuantLayer, var_of: dict[str, str]) -> dict:
    items: list[tuple[str, object]] = [
        ("name", _text(q.name)),
        ("kind", q.kind),
        ("scheme", q.scheme),
        ("bits", np.asarray(float(q.bits))),
        ("per_channel", np.asarray(bool(q.per_channel))),
        ("weight", var_of.get(q.weight, "") if q.weight else ""),
        ("weight_name", _text(q.weight or "")),
        ("bias", var_of.get(q.bias, "") if q.bias else ""),
        ("bias_name", _text(q.bias or "")),
    ]
    items.extend((key, _text(text)) for key, text in layer_facts(q))
    items.extend((key, value) for key, value in param_items(q))
    return _fields(items)


def _tensor_struct(t: ExportTensor, data: np.ndarray, layout: str) -> dict:
    items: list[tuple[str, object]] = [
        ("name", _text(t.name)),
        ("layer", _text(t.layer or "")),
        ("role", t.role),
        ("scheme", t.scheme),
        ("layout", layout),
        ("dtype", str(data.dtype)),
        ("shape", np.asarray([float(d) for d in data.shape], np.float64).reshape(1, -1)),
    ]
    if t.attrs:  # packing and other attributes: word_bits, bit_order, n, encoding, ...
        items.append(("attrs", _fields([(str(k), _meta_value(v)) for k, v in t.attrs.items()])))
    return _fields(items)


def provenance_struct(qmodel: EncodedModel, order: str) -> dict:
    prov = qmodel.provenance()
    items = [(k, _text(v)) for k, v in prov.items()]
    items.append(("qexport_version", __version__))
    items.append(("conv_order", order))
    items.append(("vectors", "1-D arrays (biases, per-channel parameters) are 1-by-C rows"))
    return _fields(items)


def build_variables(qmodel: EncodedModel, path: Path, matlab_order: bool) -> dict:
    """Every variable of the single-file output, in the order written."""
    var_names = variable_names(qmodel)
    var_of = {t.name: v for t, v in zip(qmodel.tensors, var_names)}
    fields = layer_fields(qmodel)
    order = conv_order(qmodel, matlab_order)

    names = np.empty((len(var_names) + len(fields), 3), dtype=object)
    row = 0
    for t, v in zip(qmodel.tensors, var_names):
        names[row] = (_text(t.name), v, "tensor")
        row += 1
    for q, f in zip(qmodel.layers, fields):
        names[row] = (_text(q.name), f, "layer")
        row += 1

    tensors_meta: dict = {}
    arrays: dict = {}
    for t, v in zip(qmodel.tensors, var_names):
        data, layout = matlab_array(t, matlab_order)
        arrays[v] = _check_array(t.name, data, path)
        tensors_meta[v] = _tensor_struct(t, data, layout)

    out: dict = {
        "qexport_provenance": provenance_struct(qmodel, order),
        "qexport_conv_order": order,
        "qexport_names": names,
        "qexport_layers": {f: _layer_struct(q, var_of) for q, f in zip(qmodel.layers, fields)},
        "qexport_tensors": tensors_meta,
    }
    out.update(arrays)
    return out


def _savemat(fh, mdict: dict, compress: bool, path: Path) -> None:
    from scipy.io import savemat

    start = fh.tell()
    try:
        savemat(fh, mdict, do_compression=compress, long_field_names=True, oned_as=ONED_AS)
    except (ValueError, TypeError, OverflowError) as exc:
        raise OutputError(f"{path}: cannot write MATLAB file: {exc}") from exc
    end = fh.tell()
    # Replace the header text (which holds the creation time) by a fixed one.
    fh.seek(start)
    fh.write(HEADER_TEXT.encode("ascii").ljust(HEADER_LEN, b" "))
    fh.seek(end)


def write_single(qmodel: EncodedModel, path: Path, compress: bool, matlab_order: bool) -> None:
    mdict = build_variables(qmodel, path, matlab_order)
    with atomic_file(path, "wb") as fh:
        _savemat(fh, mdict, compress, path)


def split_items(qmodel: EncodedModel, matlab_order: bool):
    """(original name, kind, array, layout, ExportTensor | None) of every file --split writes: each
    tensor, then every layer parameter as `<layer>.<key>` (scalars as 1-by-1)."""
    for t in qmodel.tensors:
        data, layout = matlab_array(t, matlab_order)
        yield t.name, "tensor", data, layout, t
    for q in qmodel.layers:
        for key, value in param_items(q):
            yield f"{q.name}.{key}", "param", value, "scalar" if value.ndim == 0 else "c", None


def split_file_stems(qmodel: EncodedModel) -> list[str]:
    names = [item[0] for item in split_items(qmodel, False)]
    return file_stems(names, (SPLIT_INDEX.removesuffix(".txt"),))


def write_split(qmodel: EncodedModel, path: Path, compress: bool, matlab_order: bool) -> None:
    items = list(split_items(qmodel, matlab_order))
    stems = split_file_stems(qmodel)
    order = conv_order(qmodel, matlab_order)
    index = ["# qexport --split: one MATLAB v5 file per array, each holding exactly the variable `array`"]
    index += [f"# {comment_text(f'{k}: {v}')}" for k, v in qmodel.provenance().items()]
    index.append(f"# conv_order: {order}; 1-D arrays are 1-by-C rows")
    index.append("# file\tname (JSON string)\tkind\tdtype\tshape\tscheme\tlayout")
    with atomic_dir(path) as tmp:
        for (name, kind, data, layout, t), stem in zip(items, stems):
            data = _check_array(name, data, path)
            with open(tmp / f"{stem}.mat", "wb") as fh:  # inside the folder atomic_dir swaps in
                _savemat(fh, {SPLIT_VAR: data}, compress, path)
            shape = "x".join(str(d) for d in data.shape) or "scalar"
            scheme = t.scheme if t is not None else "param"
            index.append("\t".join([f"{stem}.mat", json.dumps(name), kind, str(data.dtype), shape, scheme, layout]))
        with open(tmp / SPLIT_INDEX, "w", encoding="ascii", newline="\n") as fh:
            fh.write("\n".join(index) + "\n")


def split_folder(path: Path) -> Path:
    """--split writes a folder: `model.mat` (the default output name) becomes `model_mat/`."""
    return path.with_name(path.stem + "_mat") if path.suffix.lower() == ".mat" else path


def write(qmodel: EncodedModel, path, split: bool = False, matlab_order: bool = False,
          compress: bool = False) -> Path:  # fmt: skip
    """Write the .mat file (or the --split folder); returns the path actually written."""
    path = Path(path)
    if split:
        path = split_folder(path)
        write_split(qmodel, path, compress, matlab_order)
    else:
        write_single(qmodel, path, compress, matlab_order)
    return path


OPTIONS = (
    click.Option(["--split"], is_flag=True, default=False,
                 help="One .mat per array in a folder, each holding the variable `array` (seed 000's format)."),
    click.Option(["--matlab-order"], is_flag=True, default=False,
                 help="Permute 4-D conv weights to H x W x C_in x C_out (default: PyTorch's C_out x C_in x H x W)."),
    click.Option(["--compress"], is_flag=True, default=False, help="zlib-compress each variable (MATLAB v5 compression)."),
)  # fmt: skip

WRITER = WriterPlugin(
    name="mat",
    help="MATLAB v5 .mat file: integer codes in their own class, quantization parameters as structs, a name map.",
    write=write,
    suffix=".mat",
    options=OPTIONS,
)
