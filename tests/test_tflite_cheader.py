"""`qexport cheader --arithmetic tflite` (CMSIS-NN-ready header) against the `.tflite` that `qexport
tflite` writes with the same options, read through the TFLite schema's object API (tflite-micro):
a C program compiled with gcc -std=c99 -pedantic -Werror writes every array's bytes out, and they
equal the file's weight and bias buffers; the multipliers and shifts equal TFLite's
QuantizeMultiplier transcribed here (frexp-based) from the file's float32 scales; offsets, clamps,
strides, padding and dilation equal the file's (TFLM's CalculateActivationRangeQuantized and
ComputePadding transcribed here).  The header also compiles as C++11.  A binarized network: one
line, exit 1, no file."""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cheader_support import GCC, GXX, compile_c, declared_arrays
from conftest import LENET, make_state, run_cli

DIGITS = Path(__file__).parent.parent / "fixtures" / "digits_test.npz"
CAL = ("--calibrate", str(DIGITS), "--calibration-samples", "32")

SMALL = '''
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 28, 28)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, stride=2, padding=1)       # 28 -> 14, PAD + VALID in TFLite
        self.dw = nn.Conv2d(4, 8, 3, padding=1, groups=4)       # depthwise, multiplier 2, SAME
        self.g = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)  # grouped, dilated, SAME
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x):
        x = F.relu(self.dw(F.relu6(self.a(x))))
        return self.fc(self.g(x).flatten(1))
'''


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier (tensorflow/lite/kernels/internal/quantization_util.cc)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # TfLiteRound
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def activation_range(act: int, scale: float, zero_point: int, fb) -> tuple[int, int]:
    """CalculateActivationRangeQuantizedImpl for int8 (quantize: zp + round(f / scale), in float)."""
    def quantize(f):
        v = np.float32(f) / np.float32(scale)
        return zero_point + int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)

    kind = fb.ActivationFunctionType
    if act == kind.RELU:
        return max(-128, quantize(0.0)), 127
    if act == kind.RELU6:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    assert act == kind.NONE, act
    return -128, 127


def compute_padding(stride, dilation, in_size, filter_size, same: bool) -> int:
    """TFLM's ComputePaddingHeightWidth for one dimension (padding before)."""
    effective = (filter_size - 1) * dilation + 1
    out = (in_size + stride - 1) // stride if same else (in_size + stride - effective) // stride
    return max(((out - 1) * stride + effective - in_size) // 2, 0)


def dump_program(header: str, text: str) -> str:
    """Writes each array's bytes to <identifier>.bin and prints every layer macro as 'name value'."""
    lines = ["#include <stdint.h>", "#include <stdio.h>", f'#include "{header}"',
             "static void put(const char *path, const void *data, size_t size) {",
             '    FILE *f = fopen(path, "wb");', "    if (!f || fwrite(data, 1, size, f) != size) { perror(path); }",
             "    if (f) { fclose(f); }", "}", "int main(void) {"]  # fmt: skip
    for _, name, count in declared_arrays(text):
        lines.append(f'    put("{name}.bin", {name}, sizeof({name}));')
        lines.append(f'    printf("{count} %ld\\n", (long)({count}));')
    for name in re.findall(r"^#define (\w+) -?\(?-?\d+\)?$", text, re.M):
        lines.append(f'    printf("{name} %ld\\n", (long)({name}));')
    return "\n".join(lines + ["    return 0;", "}", ""])


def export_pair(tmp_path, *model_args, header_args=()):
    h = run_cli("cheader", "--arithmetic", "tflite", *header_args, *model_args, *CAL, "-o", tmp_path / "m.h", cwd=tmp_path)
    assert h.returncode == 0, h.stderr
    t = run_cli("tflite", *model_args, *CAL, "-o", tmp_path / "m.tflite", cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    return tmp_path / "m.h", tmp_path / "m.tflite"


def check_header_against_tflite(tmp_path: Path, header: Path, tflite: Path, prefix: str) -> int:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    text = header.read_text()
    (tmp_path / "dump.c").write_text(dump_program(header.name, text))
    compile_c([*GCC, "-o", "dump", "dump.c"], tmp_path)
    (tmp_path / "dump.cpp").write_text(dump_program(header.name, text))
    compile_c([*GXX, "-o", "dump_cxx", "dump.cpp"], tmp_path, "g++")
    import subprocess

    out = subprocess.run(["./dump"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    macros = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite.read_bytes()), 0)
    sub = model.subgraphs[0]
    codes = {c: name for name, c in vars(fb.BuiltinOperator).items() if not name.startswith("_")}
    layers = 0
    for op in sub.operators:
        kind = codes[model.operatorCodes[op.opcodeIndex].builtinCode]
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        x, w, b = (sub.tensors[i] for i in op.inputs)
        y = sub.tensors[op.outputs[0]]
        layer = re.sub(r"[^a-z0-9]+", "_", w.name.decode()[: -len(".weight")].lower()).strip("_")
        ident, upper = f"{prefix}_{layer}", f"{prefix}_{layer}".upper()
        for part, tensor in (("weights", w), ("biases", b)):
            assert (tmp_path / f"{ident}_{part}.bin").read_bytes() == bytes(model.buffers[tensor.buffer].data), ident
        s_in, s_out = x.quantization.scale[0], y.quantization.scale[0]
        if kind == "FULLY_CONNECTED":
            reals = [float(np.float32(s_in) * np.float32(w.quantization.scale[0])) / float(np.float32(s_out))]
        else:
            reals = [float(np.float32(s_in)) * float(np.float32(s)) / float(np.float32(s_out)) for s in w.quantization.scale]
        mult, shift = zip(*(quantize_multiplier(r) for r in reals))
        assert (tmp_path / f"{ident}_multiplier.bin").read_bytes() == np.array(mult, "<i4").tobytes(), ident
        assert (tmp_path / f"{ident}_shift.bin").read_bytes() == np.array(shift, "<i4").tobytes(), ident
        assert macros[f"{upper}_INPUT_OFFSET"] == -x.quantization.zeroPoint[0]
        assert macros[f"{upper}_OUTPUT_OFFSET"] == y.quantization.zeroPoint[0]
        lo, hi = activation_range(op.builtinOptions.fusedActivationFunction, s_out, y.quantization.zeroPoint[0], fb)
        assert (macros[f"{upper}_ACT_MIN"], macros[f"{upper}_ACT_MAX"]) == (lo, hi), ident
        if kind != "FULLY_CONNECTED":
            o = op.builtinOptions
            same = o.padding == fb.Padding.SAME
            assert (macros[f"{upper}_STRIDE_H"], macros[f"{upper}_STRIDE_W"]) == (o.strideH, o.strideW)
            assert (macros[f"{upper}_DILATION_H"], macros[f"{upper}_DILATION_W"]) == (o.dilationHFactor, o.dilationWFactor)
            assert macros[f"{upper}_PAD_H"] == compute_padding(o.strideH, o.dilationHFactor, x.shape[1], w.shape[1], same)
            assert macros[f"{upper}_PAD_W"] == compute_padding(o.strideW, o.dilationWFactor, x.shape[2], w.shape[2], same)
            assert [macros[f"{upper}_{k}"] for k in ("IN_H", "IN_W", "IN_C")] == list(x.shape[1:])
            assert [macros[f"{upper}_{k}"] for k in ("OUT_H", "OUT_W", "OUT_C")] == list(y.shape[1:])
        layers += 1
    assert macros[f"{prefix.upper()}_LAYER_COUNT"] == layers
    return layers


def test_lenet_header_arrays_equal_the_tflite_buffers(tmp_path):
    header, tflite = export_pair(tmp_path, "--bits", "8", LENET)
    assert check_header_against_tflite(tmp_path, header, tflite, "lenet") == 5
    (tmp_path / "again").mkdir()  # same options, another hash seed: the same bytes
    r = run_cli("cheader", "--arithmetic", "tflite", "--bits", "8", LENET, *CAL, "-o", "m.h", cwd=tmp_path / "again",
                env={**os.environ, "PYTHONHASHSEED": "99"})  # fmt: skip
    assert r.returncode == 0 and (tmp_path / "again" / "m.h").read_bytes() == header.read_bytes(), r.stderr


def test_depthwise_grouped_and_padded_layers_equal_the_tflite_buffers(tmp_path):
    (tmp_path / "small.py").write_text(SMALL)
    sys.path.insert(0, str(tmp_path))
    import small

    torch.manual_seed(4)
    torch.save(small.Small().state_dict(), tmp_path / "s.pth")
    header, tflite = export_pair(tmp_path, "--bits", "8", "--model-def", f"{tmp_path / 'small.py'}:Small", "s.pth",
                                  header_args=("--prefix", "qx"))
    assert check_header_against_tflite(tmp_path, header, tflite, "qx") == 4
    text = header.read_text()
    assert "#define QX_DW_DEPTH_MULTIPLIER 2" in text and "#define QX_G_FILTER_C 4" in text


def test_binarized_network_is_refused_and_nothing_written(tmp_path):
    torch.save(make_state("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}), tmp_path / "v.pth")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8))
    r = run_cli("cheader", "--arithmetic", "tflite", "v.pth", "--calibrate", "cal.npy", "-o", "v.h", cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("Error: node features.2 (hardtanh): binarized activations"), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.npy", "v.pth"]


@pytest.mark.parametrize("args, says", [(("--arithmetic", "tflite"), "--calibrate"),
                                         (("--calibrate", str(DIGITS)), "--arithmetic tflite")])  # fmt: skip
def test_calibration_and_arithmetic_go_together(tmp_path, args, says):
    r = run_cli("cheader", "--bits", "8", LENET, *args, "-o", "m.h", cwd=tmp_path)
    assert r.returncode == 2 and says in r.stderr and not (tmp_path / "m.h").exists(), r.stderr
