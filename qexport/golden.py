"""Golden vectors (`qexport golden`): per-layer integer activations for checking firmware or RTL.

Two kinds, chosen by the architecture (README "Golden vectors"):

- **lenet** (seed 002): the integer reference pass `lenet_forward_int` (affine plan): stages
  `input` (uint8 codes, N x 1 x 28 x 28), `c1` (requantized, before ReLU), `s2` (ReLU + 2x2 average
  pool, round half up), `c3`, `s4`, `c5`, `f6`, `output` (int64 in 1/G units), `prediction`
  (argmax of output) and `label` when the input has labels.
- **vgg_cifar10_binary**, **resnet18_bnn** (binary plans): for every binary conv/linear layer whose
  input is binarized (or those matching `--layer GLOB`), the float torch model carrying the
  *dequantized* weights (qexport.models) is run on the inputs and the layer's input is captured:
  `<layer>.input` (int8 +-1: +1 where the captured value > 0, else -1, the weights' rule),
  `<layer>.input_packed` (the im2col patches of that input, packed exactly like the layer's
  weights: one row of words per output position (N, HO, WO, W), same --word-bits and --layout,
  positions in the zero padding encoded as -1 = bit 0), `<layer>.popcount` (int64 N x O x HO x WO:
  n - 2 * popcount((a ^ w) & mask(n)), i.e. the +-1 dot with the padding taken as -1, what a plain
  XNOR/popcount array computes) and `<layer>.acc` (int64: the exact +-1 dot with zero padding, what
  the float model's convolution computes before alpha and bias; = popcount + sum of the weights
  under the padded positions).  Plus `input` (uint8 images) and `prediction` (argmax of the float
  model with dequantized weights).

Other architectures, plans without those layers and the graph-less generic reader are refused.
Inputs: image files (PNG/BMP/PGM/... via Pillow, converted to the model's channels; the size must
match), `.npy` uint8 arrays, `.npz` files with `images` (and optional `labels`), or `--samples N`
(the first N inputs; without --input, the digits test split fixtures/digits_test.npz, LeNet only).
The float model of the binary architectures sees code / G (G = --input-gain, default 256).

Output (a folder, always through atomic_dir): `--format npy` one .npy per stage, `mem` one $readmemh
.mem per stage (the conventions of `qexport mem`), `cheader` one `golden.h`; each with
`manifest.json`.  Deterministic: no timestamps, input files named by base name only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import click
import numpy as np

from .errors import CannotHandle, InputError, UsageError
from .model import QuantizedModel
from .names import c_identifier, comment_text
from .options import model_argument, plan_options

FORMAT = "qexport-golden"
FORMAT_VERSION = 1
FORMATS = ("npy", "mem", "cheader")
MANIFEST = "manifest.json"
HEADER = "golden.h"
BINARY_ARCHS = ("vgg_cifar10_binary", "resnet18_bnn")
IMAGE_SUFFIXES = (".png", ".bmp", ".pgm", ".ppm", ".pnm", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".webp")
DIGITS_SPLIT = Path(__file__).resolve().parents[1] / "fixtures" / "digits_test.npz"
BATCH = 16  # images per forward pass / popcount batch (bounds memory)


@dataclass
class Stage:
    name: str
    data: np.ndarray
    description: str
    layout: str
    layer: str | None = None
    encoding: str | None = None  # "pm1" for +-1 arrays, "packed" for packed words
    attrs: dict = field(default_factory=dict)


@dataclass
class Inputs:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None
    sources: list[str]  # base names


@dataclass
class Golden:
    kind: str  # "lenet-integer" | "binary-popcount"
    stages: list[Stage]
    inputs: Inputs
    notes: list[str] = field(default_factory=list)
    accuracy: float | None = None


# ------------------------------------------------------------------------------------------------
# Inputs


def input_shape(arch: str) -> tuple[int, int, int]:
    from .models import INPUT_SHAPES

    return INPUT_SHAPES[arch]


def _to_nchw(a: np.ndarray, shape: tuple[int, int, int], name: str) -> np.ndarray:
    c, h, w = shape
    if a.dtype != np.uint8:
        raise InputError(f"{name}: images must be uint8 codes 0..255, got {a.dtype}")
    if a.ndim == 2 and c == 1:
        a = a[None, None]
    elif a.ndim == 3 and c == 1:
        a = a[:, None]
    elif a.ndim == 3 and a.shape[0] == c:
        a = a[None]
    elif a.ndim == 3 and a.shape[-1] == c:
        a = a[None].transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] == c:
        pass
    elif a.ndim == 4 and a.shape[-1] == c:
        a = a.transpose(0, 3, 1, 2)
    else:
        raise InputError(f"{name}: array of shape {a.shape} is not a set of {c}x{h}x{w} images "
                         f"(N x H x W, N x C x H x W or N x H x W x C)")  # fmt: skip
    if a.shape[2:] != (h, w):
        raise InputError(f"{name}: images are {a.shape[2]}x{a.shape[3]}, the model takes {h}x{w}")
    return np.ascontiguousarray(a)


def _read_image(path: Path, shape) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a test dependency
        from .errors import DependencyMissing

        raise DependencyMissing("reading image files needs Pillow: pip install pillow") from exc
    c, h, w = shape
    try:
        with Image.open(path) as img:
            img.load()
            size = img.size
            arr = np.asarray(img.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for a bad file
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    if size != (w, h):
        raise InputError(f"{path}: image is {size[0]}x{size[1]}, the model takes {w}x{h}; resize it first")
    return _to_nchw(arr, shape, str(path))


def _read_array(path: Path, shape):
    labels = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise InputError(f"{path}: .npz without an 'images' array (has: {', '.join(z.files) or 'none'})")
                images = z["images"]
                labels = z["labels"] if "labels" in z.files else None
        else:
            images = np.load(path, allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy/.npz file ({type(exc).__name__}: {exc})") from None
    images = _to_nchw(np.asarray(images), shape, str(path))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],):
            raise InputError(f"{path}: 'labels' must be integers, one per image")
        labels = labels.astype(np.int64)
    return images, labels


def load_inputs(paths, samples: int | None, arch: str) -> Inputs:
    """The input images as uint8 (N, C, H, W), labels if every input has them, and their names."""
    shape = input_shape(arch)
    paths = [Path(p) for p in (paths or ())]
    if not paths:
        if samples is None:
            raise UsageError("give --input FILE (image, .npy or .npz) or --samples N")
        if arch != "lenet":
            raise UsageError(f"--samples without --input uses the digits test split, which fits lenet only; "
                             f"give --input for {arch}")  # fmt: skip
        if not DIGITS_SPLIT.is_file():
            raise InputError(f"{DIGITS_SPLIT.name}: the digits test split is not installed; give --input")
        paths = [DIGITS_SPLIT]
    images, labels, sources = [], [], []
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: input file not found")
        if p.suffix.lower() in (".npy", ".npz"):
            im, lab = _read_array(p, shape)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            im, lab = _read_image(p, shape), None
        else:
            raise InputError(f"{p}: unknown input type; give an image (PNG/BMP/PGM...), .npy or .npz")
        images.append(im)
        labels.append(lab)
        sources.append(p.name)
    x = np.concatenate(images)
    y = None if any(lab is None for lab in labels) else np.concatenate(labels)
    if samples is not None:
        if samples < 1:
            raise UsageError(f"--samples {samples}: must be at least 1")
        x = x[:samples]
        y = None if y is None else y[:samples]
    if x.shape[0] == 0:
        raise InputError(f"{', '.join(sources)}: no images")
    return Inputs(np.ascontiguousarray(x), y, sources)


# ------------------------------------------------------------------------------------------------
# LeNet: the integer reference pass


def lenet_golden(qmodel: QuantizedModel, inputs: Inputs) -> Golden:
    from .errors import PlanError
    from .quantize.reference import LENET_STAGES, lenet_forward_int

    schemes = {q.name: q.scheme for q in qmodel.layers}
    not_affine = [f"{n} ({schemes.get(n, 'float')})" for n in ("c1", "c3", "c5", "f6", "output")
                  if schemes.get(n) != "affine"]  # fmt: skip
    if not_affine:
        raise PlanError(f"{qmodel.model.source.name}: the LeNet integer pass needs every layer affine; "
                        f"{', '.join(not_affine)} are not (drop --keep-float/--only, use --bits 3..16)")
    acts = lenet_forward_int(qmodel, inputs.images)
    gain = int(qmodel.plan.options.input_gain)
    stages = [Stage("input", inputs.images, "input codes x (x/G stands for the pixel), uint8", "NCHW")]
    what = {"c1": "conv c1 requantized (acc*m)>>s, before ReLU", "s2": "ReLU then 2x2 average pool (sum+2)>>2",
            "c3": "conv c3 requantized, before ReLU", "s4": "ReLU then 2x2 average pool (sum+2)>>2",
            "c5": "conv c5 requantized (no ReLU)", "f6": "linear f6 requantized (no ReLU)",
            "output": "linear output requantized: logits"}  # fmt: skip
    for name in LENET_STAGES:
        a = acts[name]
        stages.append(Stage(name, a, f"{what[name]}; int64 in 1/{gain} units", "NCHW" if a.ndim == 4 else "NC",
                            layer=None if name in ("s2", "s4") else name))  # fmt: skip
    pred = acts["output"].argmax(axis=1).astype(np.int64)
    stages.append(Stage("prediction", pred, "argmax of output (first maximum)", "N"))
    g = Golden("lenet-integer", stages, inputs)
    _add_labels(g, pred)
    return g


def _add_labels(g: Golden, pred: np.ndarray) -> None:
    if g.inputs.labels is not None:
        g.stages.append(Stage("label", g.inputs.labels, "label given with the input", "N"))
        g.accuracy = float(np.mean(pred == g.inputs.labels))


# ------------------------------------------------------------------------------------------------
# Binary layers: XNOR / popcount


def dequantized_state(qmodel: QuantizedModel) -> dict[str, np.ndarray]:
    """Float tensors (PyTorch layout) with every binary/ternary weight replaced by its dequantized
    value, codes * alpha (codes alone without alpha).  BN tensors stay the checkpoint's (a BN folded
    to thresholds is equivalent to it).  Only binary architectures get here, and a plan cannot mix
    binary and affine layers (--bits applies to every quantized layer)."""
    from .quantize import pack

    model = qmodel.model
    state = {k: np.asarray(v) for k, v in model.tensors.items()}

    def oihw(name):
        t = qmodel.tensor(name)
        return pack.from_layout(t.data, t.layout if t.layout in pack.LAYOUTS else "oihw", model.tensors[name].shape)

    def chan(v, ndim):
        v = np.asarray(v, np.float32)
        return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim == 1 else v

    for q in qmodel.layers:
        if not q.weight or q.scheme == "passthrough":
            continue
        codes = oihw(q.weight)
        if q.scheme not in ("binary", "ternary"):
            raise CannotHandle(f"layer {q.name}: golden vectors of binary layers need the other layers binary, "
                               f"ternary or float, not {q.scheme}")  # fmt: skip
        w = codes.astype(np.float32)
        if "alpha" in q.params:
            w = w * chan(q.params["alpha"], w.ndim)
        state[q.weight] = np.asarray(w, np.float32)
    return state


def binary_layers(qmodel: QuantizedModel, globs=()) -> list:
    """Binary conv/linear layers whose input is binarized (filtered by --layer globs)."""
    graph = {layer.name: layer for layer in qmodel.model.layers}
    found = [q for q in qmodel.layers if q.scheme == "binary" and q.kind in ("conv", "linear")
             and graph[q.name].attrs.get("binary_input")]  # fmt: skip
    if globs:
        found = [q for q in found if any(fnmatchcase(q.name, g) for g in globs)]
    return found


def _patches(x_pm1: np.ndarray, kernel, stride, padding, layout: str) -> np.ndarray:
    """im2col of +-1 activations (N, C, H, W), padding positions = -1: (N, HO, WO, C*kh*kw) in the
    weights' flattening order (oihw: c, i, j; ohwi: i, j, c)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x_pm1, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-1)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    # win: (N, C, HO, WO, kh, kw)
    order = (0, 2, 3, 1, 4, 5) if layout == "oihw" else (0, 2, 3, 4, 5, 1)
    n, c, ho, wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(order)).reshape(n, ho, wo, c * kh * kw)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def popcount_layer(qmodel: QuantizedModel, name: str, x: np.ndarray) -> list[Stage]:
    """Stages of one binary layer for captured (pre-binarization) input activations x."""
    from .quantize import intops, pack

    opts = qmodel.plan.options
    q = qmodel.quant_layer(name)
    layer = qmodel.model.layer(name)
    t = qmodel.tensor(q.weight)
    codes = pack.from_layout(t.data, t.layout if t.layout in pack.LAYOUTS else "oihw",
                             qmodel.model.tensors[q.weight].shape)  # fmt: skip
    try:
        packed = qmodel.tensor(f"{q.weight}.packed").data
        word_bits = int(qmodel.tensor(f"{q.weight}.packed").attrs["word_bits"])
    except KeyError:
        word_bits = opts.word_bits
        packed, _ = pack.pack_binary(codes, word_bits, opts.layout)
    n = int(np.prod(codes.shape[1:]))
    x_pm1 = np.where(x > 0, 1, -1).astype(np.int8)
    zeros = int(np.count_nonzero(x == 0))
    attrs = {"n": n, "word_bits": word_bits, "layout": opts.layout if codes.ndim == 4 else "oi",
             "exact_zero_inputs": zeros}  # fmt: skip
    if codes.ndim == 4:
        if int(layer.attrs.get("groups", 1)) != 1:
            raise CannotHandle(f"layer {name}: golden popcount vectors support groups=1 convolutions only")
        kernel, stride, padding = codes.shape[2:], _pair(layer.attrs["stride"]), _pair(layer.attrs["padding"])
        patches = _patches(x_pm1, kernel, stride, padding, opts.layout)
        nn_, ho, wo, _ = patches.shape
        a_words, _ = pack.pack_binary(patches.reshape(-1, n), word_bits, "oihw")
        a_words = a_words.reshape(nn_, ho, wo, -1)
        pop = np.concatenate([pack.popcount_dot(a_words[i:i + 1], packed, n) for i in range(nn_)])
        pop = pop.transpose(0, 3, 1, 2)
        acc = intops.int_conv2d(x_pm1, codes, None, stride=stride, padding=padding)
        act_layout, word_layout, out_layout = "NCHW", "N,HO,WO,words", "NCHW (N,O,HO,WO)"
    else:
        x_pm1 = x_pm1.reshape(x_pm1.shape[0], -1)
        a_words, _ = pack.pack_binary(x_pm1, word_bits, "oihw")
        pop = pack.popcount_dot(a_words, packed, n)
        acc = intops.int_linear(x_pm1, codes)
        act_layout, word_layout, out_layout = "NC", "N,words", "NC (N,O)"
    stages = [
        Stage(f"{name}.input", x_pm1, "binarized input activations (+1 where the float value > 0, else -1)",
              act_layout, name, "pm1", attrs),
        Stage(f"{name}.input_packed", a_words, f"input patches packed like the weights ({word_bits}-bit words, "
              f"LSB-first, 1=+1, padding positions -1 = bit 0)", word_layout, name, "packed", attrs),
        Stage(f"{name}.popcount", pop, "n - 2*popcount((a ^ w) & mask(n)): +-1 dot, padding taken as -1",
              out_layout, name, None, attrs),
        Stage(f"{name}.acc", acc, "exact +-1 dot with zero padding (before alpha and bias)", out_layout, name,
              None, attrs),
    ]  # fmt: skip
    if "threshold" in q.params and "flip" in q.params:
        stages.append(threshold_stage(name, layer, q, acc, attrs))
    return stages


def threshold_stage(name: str, layer, q, acc: np.ndarray, attrs: dict) -> Stage:
    """BN + sign folded to integer thresholds: +1 iff (flip ? a <= threshold : a >= threshold), where a
    is acc, or its 2x2 max-pool when the graph pools between the conv and the BN."""
    a, what = acc, "acc"
    if "maxpool2" in layer.follows and acc.ndim == 4:
        h, w = acc.shape[2] // 2 * 2, acc.shape[3] // 2 * 2
        a = acc[:, :, :h:2, :w:2]
        for di, dj in ((0, 1), (1, 0), (1, 1)):
            a = np.maximum(a, acc[:, :, di:h:2, dj:w:2])
        what = "2x2 max-pool of acc"
    shape = (1, -1) + (1,) * (a.ndim - 2)
    tau = np.asarray(q.params["threshold"], np.int64).reshape(shape)
    flip = np.asarray(q.params["flip"]).astype(bool).reshape(shape)
    out = np.where(np.where(flip, a <= tau, a >= tau), 1, -1).astype(np.int8)
    return Stage(f"{name}.output", out, f"sign(BN(.)) as thresholds: +1 iff (flip ? a <= threshold : a >= threshold), "
                 f"a = {what}", "NCHW" if out.ndim == 4 else "NC", name, "pm1", attrs)  # fmt: skip


def binary_golden(qmodel: QuantizedModel, inputs: Inputs, globs=()) -> Golden:
    import torch

    from .models import build

    layers = binary_layers(qmodel, globs)
    if not layers:
        which = f" matching --layer {' '.join(globs)}" if globs else ""
        raise CannotHandle(f"{qmodel.model.source.name}: no binary conv/linear layer with binarized input{which} "
                           f"in this plan; golden vectors need the default binary plan (or --bits 1)")  # fmt: skip
    net = build(qmodel.arch, dict(qmodel.model.config))
    state = {k: torch.from_numpy(np.array(v)) for k, v in dequantized_state(qmodel).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CannotHandle(f"{qmodel.model.source.name}: the model's tensors do not fit the {qmodel.arch} module "
                           f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")  # fmt: skip
    captured: dict[str, list[np.ndarray]] = {q.name: [] for q in layers}
    hooks = []
    for q in layers:
        def hook(module, args, name=q.name):
            captured[name].append(args[0].detach().cpu().numpy().copy())

        hooks.append(net.get_submodule(q.name).register_forward_pre_hook(hook))
    gain = float(qmodel.plan.options.input_gain)
    preds = []
    try:
        with torch.no_grad():
            for i in range(0, inputs.images.shape[0], BATCH):
                x = torch.from_numpy(inputs.images[i:i + BATCH].astype(np.float32) / np.float32(gain))
                preds.append(net(x).argmax(dim=1).numpy().astype(np.int64))
    finally:
        for h in hooks:
            h.remove()
    stages = [Stage("input", inputs.images, f"input codes x (the float model sees x/{int(gain)}), uint8", "NCHW")]
    notes = []
    for q in layers:
        layer_stages = popcount_layer(qmodel, q.name, np.concatenate(captured[q.name]))
        zeros = layer_stages[0].attrs["exact_zero_inputs"]
        if zeros:
            notes.append(f"{q.name}: {zeros} input activation(s) were exactly 0 (sign 0 in the float model); "
                         f"the golden vectors take them as -1")  # fmt: skip
        stages.extend(layer_stages)
    pred = np.concatenate(preds)
    stages.append(Stage("prediction", pred, "argmax of the float model with dequantized weights", "N"))
    g = Golden("binary-popcount", stages, inputs, notes)
    _add_labels(g, pred)
    return g


def golden_vectors(qmodel: QuantizedModel, inputs: Inputs, layers=()) -> Golden:
    if not qmodel.model.has_graph:
        raise CannotHandle(f"{qmodel.model.source.name}: golden vectors need the layer graph of a documented "
                           f"architecture; this checkpoint was read by the generic reader (use --arch)")  # fmt: skip
    if qmodel.arch == "lenet":
        if layers:
            raise UsageError("--layer selects binary layers; the LeNet integer pass always gives every stage")
        return lenet_golden(qmodel, inputs)
    if qmodel.arch in BINARY_ARCHS:
        return binary_golden(qmodel, inputs, layers)
    raise CannotHandle(f"{qmodel.model.source.name}: golden vectors exist for lenet (integer pass) and for the "
                       f"binary layers of {' and '.join(BINARY_ARCHS)}; {qmodel.arch} has neither")  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Output


def stage_stems(stages: list[Stage]) -> list[str]:
    from .writers.mem import file_stems

    return file_stems([s.name for s in stages])


def stage_encoding(s: Stage) -> dict:
    """Memory-word encoding of a stage (the conventions of `qexport mem`)."""
    a = s.data
    if s.encoding == "pm1":
        return {"element_bits": 1, "signed": False, "packed": False, "encoding": "1=+1,0=-1", "pm1": True}
    if s.encoding == "packed":
        bits = a.dtype.itemsize * 8
        return {"element_bits": bits, "signed": False, "packed": True, "encoding": "packed words, LSB-first, 1=+1"}
    if a.dtype == np.uint8:
        return {"element_bits": 8, "signed": False, "packed": False, "encoding": "unsigned 8-bit"}
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    bits = 32 if -(1 << 31) <= lo and hi < (1 << 31) else 64
    return {"element_bits": bits, "signed": True, "packed": False, "encoding": f"{bits}-bit two's complement"}


def c_array(s: Stage) -> np.ndarray:
    """The stage as the narrowest exact C type used in the header."""
    a = s.data
    if s.encoding == "pm1":
        return a.astype(np.int8)
    if a.dtype.kind == "u":
        return a
    enc = stage_encoding(s)
    return a.astype(np.int32 if enc["element_bits"] == 32 else np.int64)


def manifest(qmodel: QuantizedModel, g: Golden, files: list[str], fmt: str, extra: list[dict] | None) -> dict:
    entries = []
    for i, (s, f) in enumerate(zip(g.stages, files)):
        e = {"name": s.name, "file": f, "shape": list(s.data.shape), "dtype": str(s.data.dtype),
             "layout": s.layout, "description": s.description}  # fmt: skip
        if s.layer:
            e["layer"] = s.layer
        if s.attrs:
            e["attrs"] = dict(s.attrs)
        if extra:
            e.update(extra[i])
        entries.append(e)
    out = {"format": FORMAT, "format_version": FORMAT_VERSION, "output_format": fmt, "kind": g.kind,
           "provenance": qmodel.provenance(), "inputs": g.inputs.sources, "count": int(g.inputs.images.shape[0]),
           "input_gain": int(qmodel.plan.options.input_gain), "stages": entries, "notes": g.notes}  # fmt: skip
    if g.accuracy is not None:
        out["accuracy"] = g.accuracy
    return out


def _dump(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(text + "\n")


_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
C_TYPES = {"uint8": "uint8_t", "int8": "int8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
           "int32": "int32_t", "int64": "int64_t"}  # fmt: skip
C_SUFFIX = {"uint32": b"U", "uint64": b"ULL", "int64": b"LL"}
PER_LINE = 12


def decimal_cells(a: np.ndarray) -> np.ndarray:
    """Integers -> C literals as a (n, width) uint8 matrix, right-aligned; vectorised (a loop over the
    <= 20 digit positions, not over elements).  INT64_MIN becomes (-9223372036854775807LL - 1)."""
    v = np.asarray(a).reshape(-1)
    neg = v < 0 if v.dtype.kind == "i" else np.zeros(v.shape, bool)
    with np.errstate(over="ignore"):
        mag = np.where(neg, (~v.astype(np.int64)).astype(np.uint64) + np.uint64(1), v.astype(np.uint64))
    ndig = max(1, len(str(int(mag.max())))) if v.size else 1
    digits = np.empty((v.size, ndig), dtype=np.uint8)
    rest = mag.copy()
    for k in range(ndig):
        digits[:, ndig - 1 - k] = _DIGITS[(rest % np.uint64(10)).astype(np.intp)]
        rest //= np.uint64(10)
    lead = (digits == ord("0")).cumprod(axis=1).astype(bool)
    lead[:, -1] = False  # keep one digit for 0
    digits[lead] = ord(" ")
    sign = np.full((v.size, 1), ord(" "), np.uint8)
    cells = np.concatenate([sign, digits], axis=1)
    first = lead.sum(axis=1)  # the sign goes just before the first digit
    rows = np.nonzero(neg)[0]
    cells[rows, first[rows]] = ord("-")
    suffix = C_SUFFIX.get(v.dtype.name, b"")
    if suffix:
        cells = np.concatenate([cells, np.broadcast_to(np.frombuffer(suffix, np.uint8), (v.size, len(suffix)))], 1)
    if v.dtype == np.int64 and v.size and (v == np.iinfo(np.int64).min).any():
        token = np.frombuffer(b"(-9223372036854775807LL - 1)", np.uint8)
        pad = np.full((v.size, max(0, token.size - cells.shape[1])), ord(" "), np.uint8)
        cells = np.concatenate([pad, cells], axis=1)
        low = np.nonzero(v == np.iinfo(np.int64).min)[0]
        cells[low] = ord(" ")
        cells[low, cells.shape[1] - token.size:] = token
    return cells


def initializer(a: np.ndarray) -> bytes:
    """`  v, v, ...,` lines of PER_LINE values."""
    cells = decimal_cells(a)
    n, w = cells.shape
    items = np.concatenate([np.full((n, 1), ord(" "), np.uint8), cells, np.full((n, 1), ord(","), np.uint8)], 1)
    full = n // PER_LINE
    out = b""
    if full:
        lines = items[: full * PER_LINE].reshape(full, PER_LINE * (w + 2))
        lines = np.concatenate([np.full((full, 2), ord(" "), np.uint8), lines, np.full((full, 1), 10, np.uint8)], 1)
        out = lines.tobytes()
    if n % PER_LINE:
        out += b"  " + items[full * PER_LINE:].tobytes() + b"\n"
    return out


def _header_text(qmodel: QuantizedModel, g: Golden, names: list[str]) -> bytes:
    from .writers.common import provenance_lines

    lines = ["/*", f" * {HEADER}: golden vectors generated by qexport -- do not edit.", " *"]
    lines += [f" * {line}" for line in provenance_lines(qmodel)]
    sources = ", ".join(g.inputs.sources)
    lines += [f" * {comment_text('inputs: ' + sources)}",
              f" * {comment_text(f'kind: {g.kind}; arrays are flat, row-major in the stated layout')}",
              " */", "#ifndef QEXPORT_GOLDEN_H", "#define QEXPORT_GOLDEN_H", "", "#include <stdint.h>", "",
              "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
              f"#define GOLDEN_COUNT {int(g.inputs.images.shape[0])}",
              f"#define GOLDEN_INPUT_GAIN {int(qmodel.plan.options.input_gain)}", ""]  # fmt: skip
    out = ["\n".join(lines).encode("ascii") + b"\n"]
    for s, ident in zip(g.stages, names):
        a = c_array(s)
        up = ident.upper()
        block = [f"/* {comment_text(s.name)}: {comment_text(s.description)}; layout {comment_text(s.layout)} */"]
        block.append(f"#define {up}_NDIM {a.ndim}")
        block += [f"#define {up}_DIM{k} {d}" for k, d in enumerate(a.shape)]
        block.append(f"#define {up}_COUNT {a.size}")
        block.append(f"static const {C_TYPES[a.dtype.name]} {ident}[{max(a.size, 1)}] = {{")
        body = initializer(a.reshape(-1) if a.size else np.zeros(1, a.dtype))
        out.append(("\n".join(block) + "\n").encode("ascii") + body + b"};\n\n")
    out.append(b'#ifdef __cplusplus\n}\n#endif\n\n#endif /* QEXPORT_GOLDEN_H */\n')
    return b"".join(out)


def header_names(stages: list[Stage]) -> list[str]:
    from .names import unique

    reserved = ["golden_count", "golden_input_gain"]
    names = unique(reserved + [s.name for s in stages], lambda n: "golden_" + c_identifier(n).lower(), 80)
    return names[len(reserved):]


def write_golden(qmodel: QuantizedModel, g: Golden, path, fmt: str = "npy") -> Path:
    from .atomic import atomic_dir
    from .writers.npy import write_npy

    path = Path(path)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    stems = stage_stems(g.stages)
    with atomic_dir(path) as tmp:
        if fmt == "npy":
            files = [f"{stem}.npy" for stem in stems]
            for s, f in zip(g.stages, files):
                with open(tmp / f, "wb") as fh:
                    write_npy(fh, np.ascontiguousarray(s.data))
            _dump(tmp / MANIFEST, manifest(qmodel, g, files, fmt, None))
        elif fmt == "mem":
            from .writers.common import provenance_lines
            from .writers.mem import layout_words, write_memory

            files, extra = [f"{stem}.mem" for stem in stems], []
            for s, f in zip(g.stages, files):
                enc = stage_encoding(s)
                words, geometry = layout_words(s.name, s.data, enc, None)
                info = {**geometry, "signed": enc["signed"], "encoding": enc["encoding"],
                        "word_order": f"C order (row-major) of shape {list(s.data.shape)} ({s.layout}); one "
                                      f"{'word' if enc['packed'] else 'element'} per address"}  # fmt: skip
                extra.append(info)
                comments = [f"qexport golden: {s.name} {'x'.join(map(str, s.data.shape))} {s.layout}",
                            f"{s.description}",
                            f"depth {geometry['depth']} width {geometry['width']} encoding: {enc['encoding']}"]
                comments += provenance_lines(qmodel)
                with open(tmp / f, "wb") as fh:
                    write_memory(fh, "mem", words, geometry, comments)
            _dump(tmp / MANIFEST, manifest(qmodel, g, files, fmt, extra))
        else:
            names = header_names(g.stages)
            with open(tmp / HEADER, "wb") as fh:
                fh.write(_header_text(qmodel, g, names))
            extra = [{"c_array": n, "c_type": c_array(s).dtype.name} for s, n in zip(g.stages, names)]
            _dump(tmp / MANIFEST, manifest(qmodel, g, [HEADER] * len(g.stages), fmt, extra))
    return path


def golden(model_path=None, inputs=(), output=None, fmt: str = "npy", samples: int | None = None, layers=(),
           **plan_kw):  # fmt: skip
    """Library entry point: (output folder, Golden, QuantizedModel)."""
    from .export import find_default_model, load_model, options_text, plan_options_from, quantize

    model_path = Path(model_path) if model_path else find_default_model()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    model = load_model(model_path, plan_kw.get("arch"), needs_graph=True, command="golden")
    opts = plan_options_from(**plan_kw)
    text = options_text({**plan_kw, "format": fmt, "layer": tuple(layers)})
    qmodel = quantize(model, opts, text)
    data = load_inputs(inputs, samples, qmodel.arch)
    g = golden_vectors(qmodel, data, tuple(layers))
    name = model_path.name
    for suffix in (".pth.tar", ".pth", ".pt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    out = Path(output) if output else Path(name + "_golden")
    write_golden(qmodel, g, out, fmt)
    return out, g, qmodel


@click.command("golden")
@model_argument
@click.option("-i", "--input", "inputs", multiple=True, type=click.Path(readable=False, path_type=str), metavar="FILE",
              help="Input images: an image file (PNG/BMP/PGM... converted to the model's channels), a .npy of "
                   "uint8 images, or a .npz with 'images' (and 'labels'). Repeatable.")
@click.option("-n", "--samples", type=int, default=None, metavar="N",
              help="Use the first N inputs; without --input, the first N of the digits test split (LeNet).")
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str),
              help="Output folder (default: <checkpoint>_golden).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="npy", show_default=True,
              help="npy: one .npy per stage; mem: one $readmemh .mem per stage; cheader: golden.h.")
@click.option("--layer", "layers", multiple=True, metavar="GLOB",
              help="Binary architectures: only the binary layers matching GLOB (repeatable; default: all).")
@plan_options
def golden_cmd(model, inputs, samples, output, fmt, layers, **kw):
    """Golden vectors: per-layer integer activations of the reference pass (LeNet) or the
    XNOR/popcount outputs of binary layers, for checking firmware or RTL layer by layer."""
    from .export import print_notes, write_report

    out, g, qmodel = golden(model, inputs, output, fmt, samples, layers, **kw)
    if not model:
        click.echo(f"qexport: using {qmodel.model.source.name}", err=True)
    print_notes(qmodel.model.notes + qmodel.notes + tuple(g.notes))
    if kw.get("report"):
        write_report(qmodel, kw["report"])
    if kw.get("verbose"):
        from .report import format_report

        click.echo(format_report(qmodel), err=True)
    n = int(g.inputs.images.shape[0])
    if g.accuracy is not None:
        click.echo(f"qexport: golden: {n} input(s), accuracy {g.accuracy:.4f} against the labels "
                   f"({'integer pass' if g.kind == 'lenet-integer' else 'float model, dequantized weights'})",
                   err=True)  # fmt: skip
    click.echo(f"qexport: wrote {out} ({len(g.stages)} stages, {n} input(s))", err=True)
