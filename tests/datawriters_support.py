"""Helpers shared by the data-writer tests (mat, txt, npy, h5).

The expected arrays always come from the QuantizedModel computed here, in the test process
(`qexport.export.load_model` + `quantize`), never from the output under test.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from conftest import run_cli

# case id -> (architecture, plan keyword arguments).  Covers each documented architecture's seed
# plan (--plan seed: affine LeNet/MobileNet, binary VGG/ResNet, ternary TWN), the default export
# (as trained), float export and --bits overrides.
CASES = {
    "lenet-as-trained": ("lenet", {}),
    "lenet-default": ("lenet", {"plan": "seed"}),
    "lenet-float": ("lenet", {"keep_float": ("*",)}),
    "lenet-bits1": ("lenet", {"bits": 1}),
    "lenet-bits2-pack": ("lenet", {"bits": 2, "pack": True}),
    "lenet-bits12-perchannel": ("lenet", {"bits": 12, "per_channel": True}),
    "vgg-default": ("vgg_cifar10_binary", {"plan": "seed"}),
    "vgg-foldbn-pack": ("vgg_cifar10_binary", {"plan": "seed", "fold_bn": True, "pack": True}),
    "vgg-float": ("vgg_cifar10_binary", {"keep_float": ("*",)}),
    "twn-default": ("twn_nin_gc", {"plan": "seed"}),
    "twn-bits1-pack": ("twn_nin_gc", {"bits": 1, "pack": True}),
    "twn-float": ("twn_nin_gc", {"keep_float": ("*",)}),
    "resnet-default-pack": ("resnet18_bnn", {"plan": "seed", "pack": True}),
    "resnet-float": ("resnet18_bnn", {"keep_float": ("*",)}),
    "mobilenet-default": ("mobilenet_v1", {"plan": "seed"}),
    "mobilenet-bits8-pertensor": ("mobilenet_v1", {"bits": 8, "per_channel": False}),
    "mobilenet-bits2": ("mobilenet_v1", {"bits": 2}),
    "mobilenet-float": ("mobilenet_v1", {"keep_float": ("*",)}),
}

MATLAB_KEYWORDS = {
    "break", "case", "catch", "classdef", "continue", "else", "elseif", "end", "for", "function", "global",
    "if", "otherwise", "parfor", "persistent", "return", "spmd", "switch", "try", "while",
}  # fmt: skip
MATLAB_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def cli_args(kw: dict) -> list[str]:
    """The command-line flags that give the plan keyword arguments `kw`."""
    args: list[str] = []
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if key == "per_channel":
            args.append("--per-channel" if value else "--per-tensor")
        elif key == "fold_bn":
            args.append("--fold-bn" if value else "--no-fold-bn")
        elif key == "pack":
            args.append("--pack" if value else "--no-pack")
        elif isinstance(value, tuple):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


@lru_cache(maxsize=8)
def _expected(path: str, frozen: tuple):
    from qexport.encode.arrange import arrange
    from qexport.encode.options import encode_options_from
    from qexport.export import load_model, plan_options_from, quantize

    return arrange(quantize(load_model(path), plan_options_from(**dict(frozen))), encode_options_from(**dict(frozen)))


def expected_model(path, kw: dict | None = None):
    """The QuantizedModel for checkpoint `path` and plan options `kw`, computed in this process."""
    return _expected(str(path), tuple(sorted((kw or {}).items())))


def per_channel_params(qm):
    """(name, array) of every per-channel layer parameter, as `<layer>.<key>`."""
    out = []
    for q in qm.layers:
        for key, value in q.params.items():
            value = np.asarray(value)
            if value.ndim:
                out.append((f"{q.name}.{key}", value))
    return out


def assert_same(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Same dtype, same shape, same bits."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    a = np.ascontiguousarray(actual).view(np.uint8)
    e = np.ascontiguousarray(expected).view(np.uint8)
    assert np.array_equal(a, e), f"{what}: values differ"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_ok(*args, cwd=None):
    r = run_cli(*args, cwd=cwd)
    assert r.returncode == 0, f"qexport {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr}"
    return r


def run_twice(tmp_path: Path, writer: str, model, name: str, *args) -> tuple[Path, Path]:
    """Run the same export twice, at least 1.1 s apart (timestamps have a 1 s resolution)."""
    outs = []
    for i in (1, 2):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        start = time.time()
        run_ok(writer, model, "-o", folder / name, *args)
        outs.append(folder / name)
        if i == 1:
            time.sleep(max(0.0, 1.1 - (time.time() - start)))
    return outs[0], outs[1]


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `path` (or of `path` itself)."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    from qexport.atomic import TMP_MARK

    return sorted(p.name for p in Path(folder).iterdir() if TMP_MARK in p.name)


def make_names_checkpoint(path: Path) -> Path:
    """A generic state_dict whose keys break naive exporters: illegal characters, a leading digit,
    MATLAB keywords, keys equal after sanitising or after 63 characters, comment terminators,
    quotes, a newline, path traversal, case-only differences, non-ASCII, and a tensor > 1000 values."""
    import torch

    g = torch.Generator().manual_seed(7)
    prefix = "very_long_module_name_" * 4  # 88 characters: keys differ only after 63
    shapes = {
        "1bad name/x.weight": (4, 3), "1bad name/x.bias": (4,),
        "a.b-c": (5,), "a_b_c": (5,), "A_B_C": (3,),
        prefix + "a.weight": (3, 2), prefix + "b.weight": (3, 2),
        "end.weight": (2, 3, 3, 3), "end": (2,), "for": (1,),
        "q\"uote's.weight": (2, 2), "star*/comment.bias": (2,), "new\nline.weight": (2, 2),
        "dots..x": (2,), ".": (1,), "..": (1,), "../etc/passwd": (1,),
        "quant": (2,), "index": (2,), "manifest": (2,), "qexport_names": (2,), "array": (2,),
        "CASE.weight": (2, 2), "case.weight": (2, 2), "caf\u00e9.weight": (2, 2),
        "big.weight": (40, 30),
    }  # fmt: skip
    torch.save({k: torch.randn(s, generator=g) for k, s in shapes.items()}, path)
    return path


# --- GNU Octave -------------------------------------------------------------------------------

OCTAVE_CLASSES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
                  "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "single": np.float32,
                  "double": np.float64, "logical": np.uint8, "char": np.uint8}  # fmt: skip

OCTAVE_DUMP = r"""
1;
function dumpvar(name, v, outdir)
  global counter;
  if isstruct(v)
    f = fieldnames(v);
    printf('STRUCT %s %d\n', name, numel(f));
    for k = 1:numel(f)
      dumpvar([name '.' f{k}], v.(f{k}), outdir);
    end
  elseif iscell(v)
    printf('CELL %s %s\n', name, sprintf('%d ', size(v)));
    for k = 1:numel(v)
      dumpvar(sprintf('%s{%d}', name, k), v{k}, outdir);
    end
  else
    counter = counter + 1;
    fid = fopen(fullfile(outdir, sprintf('%d.bin', counter)), 'wb');
    if ischar(v) || islogical(v)
      fwrite(fid, double(v), 'uint8');
    else
      fwrite(fid, v, class(v));
    end
    fclose(fid);
    cls = class(v);
    printf('VAR %s %s %d %s\n', name, cls, counter, sprintf('%d ', size(v)));
    if isinteger(v) && any(strcmp(cls, {'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32'}))
      printf('SUM %s %.17g\n', name, sum(double(v(:))));
    end
  end
end
global counter;
counter = 0;
for j = 1:numel(files)
  S = load(files{j});
  names = fieldnames(S);
  for k = 1:numel(names)
    dumpvar(sprintf('%d:%s', j, names{k}), S.(names{k}), outdir);
  end
end
printf('DONE\n');
"""


def octave_load(mat_files: list[Path], workdir: Path) -> list[dict]:
    """Load every file with GNU Octave's `load` and dump every variable it sees (struct fields and
    cell elements included) with fwrite in its own class.  Returns one dict per file:
    variable path -> (class, size tuple, column-major values as numpy array); cells map to
    ('cell', size, None); `SUM` checksums printed by Octave are under key ('sum', path)."""
    from tools import require_tool

    octave = require_tool("octave")
    outdir = workdir / "octave_dump"
    outdir.mkdir(parents=True, exist_ok=True)
    files = "{" + ", ".join("'" + str(Path(f).resolve()).replace("'", "''") + "'" for f in mat_files) + "}"
    script = workdir / "qexport_octave_dump.m"
    script.write_text(f"files = {files};\noutdir = '{outdir}';\n" + OCTAVE_DUMP)
    r = subprocess.run([octave, "--no-gui", "--quiet", "--no-window-system", str(script)], capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    # Octave prints X11 notices and a spurious "ignoring const execution_exception" on stderr: judge
    # by the exit code and stdout.
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), f"octave failed: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    out: list[dict] = [dict() for _ in mat_files]
    for line in r.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "VAR":
            path, cls, counter, *dims = rest.split(" ")
            j, _, name = path.partition(":")
            data = np.fromfile(outdir / f"{counter}.bin", dtype=OCTAVE_CLASSES[cls])
            out[int(j) - 1][name] = (cls, tuple(int(d) for d in dims if d), data)
        elif kind == "CELL":
            path, *dims = rest.split(" ")
            j, _, name = path.partition(":")
            out[int(j) - 1][name] = ("cell", tuple(int(d) for d in dims if d), None)
        elif kind == "SUM":
            path, value = rest.split(" ")
            j, _, name = path.partition(":")
            out[int(j) - 1][("sum", name)] = float(value)
    return out


def matlab_shape(a: np.ndarray) -> tuple[int, ...]:
    """The size MATLAB sees for a numpy array written by scipy with oned_as='row'."""
    if a.ndim == 0:
        return (1, 1)
    if a.ndim == 1:
        return (1, a.shape[0])
    return a.shape


def assert_octave_var(seen: tuple, expected: np.ndarray, what: str) -> None:
    """An Octave dump entry equals `expected` (class, size and every value, column-major)."""
    cls, size, data = seen
    expected = np.asarray(expected)
    shape = matlab_shape(expected)
    while len(shape) > 2 and shape[-1] == 1:  # MATLAB drops trailing singleton dimensions
        shape = shape[:-1]
    expected = expected.reshape(shape)
    want_cls = {"float32": "single", "float64": "double", "bool": "logical"}.get(str(expected.dtype), str(expected.dtype))
    assert cls == want_cls, f"{what}: Octave class {cls}, expected {want_cls}"
    assert size == matlab_shape(expected), f"{what}: Octave size {size}, expected {matlab_shape(expected)}"
    flat = np.asarray(expected).reshape(matlab_shape(expected)).ravel(order="F")
    assert_same(data, flat.astype(data.dtype) if expected.dtype == bool else flat, what)


# --- h5dump -------------------------------------------------------------------------------------

def h5dump(path: Path, *args: str) -> str:
    from tools import require_tool

    exe = require_tool("h5dump")
    r = subprocess.run([exe, "-w", "0", "-y", "-m", "%.17g", *args, str(path)], capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, f"h5dump failed: {r.stderr[-2000:]}"
    return r.stdout


_OPEN = re.compile(r'^(GROUP|DATASET|ATTRIBUTE) "(.*)" \{$')


def _value(token: str):
    token = token.strip()
    if token.startswith('"'):
        return token[1:-1]
    try:
        return int(token)
    except ValueError:
        return float(token)


def parse_h5dump(text: str) -> dict[str, dict]:
    """h5dump's text output (with -w 0 -y) as {path: {"kind", "type", "shape", "data", "attrs"}};
    dataset paths look like '/features/0/weight', attributes are under their object's "attrs"."""
    objects: dict[str, dict] = {}
    stack: list[dict] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        m = _OPEN.match(line)
        if m:
            kind, name = m.groups()
            if kind == "GROUP":
                path = "/" if name == "/" else (stack[-1]["path"].rstrip("/") + "/" + name)
                obj = {"kind": "group", "path": path, "attrs": {}}
                objects[path] = obj
            elif kind == "DATASET":  # `h5dump -d /a/b` names the dataset by its full path
                path = name if name.startswith("/") else stack[-1]["path"].rstrip("/") + "/" + name
                obj = {"kind": "dataset", "path": path, "attrs": {}}
                objects[path] = obj
            else:
                obj = {"kind": "attribute", "path": name, "attrs": {}}
                stack[-1]["attrs"][name] = obj
            stack.append(obj)
        elif line.startswith("DATATYPE"):
            rest = line[len("DATATYPE"):].strip()
            if rest.endswith("{"):
                stack[-1]["type"] = rest[:-1].strip()
                depth = 1
                while depth:
                    inner = lines[i].strip()
                    i += 1
                    depth += inner.endswith("{") - (inner == "}" or inner.startswith("}"))
            else:
                stack[-1]["type"] = rest
        elif line.startswith("DATASPACE"):
            rest = line[len("DATASPACE"):].strip()
            if rest.startswith("SCALAR"):
                stack[-1]["shape"] = ()
            else:
                dims = re.search(r"\(\s*([^)]*)\)", rest).group(1)
                stack[-1]["shape"] = tuple(int(d) for d in dims.split(",") if d.strip())
        elif line == "DATA {":
            values: list = []
            while lines[i].strip() != "}":
                item = lines[i].strip().rstrip(",")
                i += 1
                if item.startswith('"'):
                    # h5dump prints strings unescaped: a newline inside one continues on the next line
                    while (len(item) < 2 or not item.endswith('"')) and lines[i].strip() != "}":
                        item += "\n" + lines[i].strip().rstrip(",")
                        i += 1
                    values.append(item[1:-1])
                else:
                    values.extend(_value(v) for v in item.split(",") if v.strip())
            i += 1
            stack[-1]["data"] = values
        elif line == "}":
            if stack:
                stack.pop()
    return objects


H5DUMP_TYPES = {"int8": "H5T_STD_I8LE", "uint8": "H5T_STD_U8LE", "int16": "H5T_STD_I16LE", "uint16": "H5T_STD_U16LE",
                "int32": "H5T_STD_I32LE", "uint32": "H5T_STD_U32LE", "int64": "H5T_STD_I64LE",
                "uint64": "H5T_STD_U64LE", "float32": "H5T_IEEE_F32LE", "float64": "H5T_IEEE_F64LE"}  # fmt: skip


def assert_h5dump_obj(obj: dict, expected: np.ndarray, what: str) -> None:
    """An h5dump dataset/attribute entry equals `expected`: type, shape and every value."""
    expected = np.asarray(expected)
    assert obj.get("type") == H5DUMP_TYPES[str(expected.dtype)], f"{what}: h5dump type {obj.get('type')}"
    assert obj.get("shape") == expected.shape, f"{what}: h5dump shape {obj.get('shape')} != {expected.shape}"
    values = obj.get("data")
    assert values is not None, f"{what}: h5dump printed no data"
    if expected.dtype.kind == "f":
        got = np.asarray(values, dtype=np.float64).astype(expected.dtype)
    else:
        got = np.asarray([int(v) for v in values], dtype=object).astype(expected.dtype)
    assert_same(got.reshape(expected.shape), expected, what)


def read_json_header(path: Path) -> dict:
    with open(path, encoding="ascii") as fh:
        first = fh.readline()
    assert first.startswith("# "), f"{path.name}: first line is not a # header"
    return json.loads(first[2:])
