"""C source of the integer graph (issue 16, qexport.csource): the generated `<name>_inference.c`
compiled with gcc -std=c99 -pedantic and with g++ -std=c++11 (the .c as C++), run on real digits
(LeNet) and random images (MobileNetV1, the binary VGG with BN + sign thresholds on its
accumulators, a ResNet18 BNN with thresholds on codes and PReLU), equals run_integer at every node
bit for bit (the hook dumps each node's codes); a synthetic graph covers the ops and types the
networks do not (int8 weights, int64 accumulators and biases, dilation, groups, max pool, clamp,
table, channel shuffle, add, sign mode with int64 tau and overlapping min/max pool windows, tau at
the int32 extremes, negative m_neg); the C rshift equals Python's exact floor division on negative values; the files
compile for Cortex-M4 (arm-none-eabi-gcc, objects) and are deterministic; LeNet runs bare metal on
a Cortex-M4 in QEMU (mps2-an386) and prints codes equal to run_integer.

Expected values always come from run_integer (numpy) or Python ints, never from the C text."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cheader_support import ARM, GCC, GXX, compile_c
from conftest import LENET, digits_test_split, make_state
from onnx_support import onnx_qmodel
from qexport.csource import generate, write_csource
from qexport.csource.arena import check_arena, plan_arena
from qexport.errors import UsageError
from qexport.integer.calibrate import calibrate
from qexport.integer.ir import IntGraph, IntNode, QTensor
from qexport.integer.lower import lower
from qexport.integer.run import run_integer

MAIN = r"""
#include <stdio.h>
#include "NAME_inference.h"
static void dump(int node, const char *name, const uint8_t *codes, size_t n)
{
    const char *p;
    printf("%d ", node);
    for (p = name; *p; p++)
        printf("%02x", (unsigned)(unsigned char)*p); /* hex: any name survives */
    printf(" %lu\n", (unsigned long)n);
    fwrite(codes, 1, n, stdout);
}
int main(int argc, char **argv)
{
    static uint8_t img[UNAME_INPUT_SIZE];
    static int32_t out[UNAME_OUTPUT_SIZE];
    FILE *f;
    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL)
        return 2;
    NAME_set_hook(dump);
    while (fread(img, 1, sizeof img, f) == sizeof img) {
        if (NAME_run(img, out) != 0)
            return 1;
        printf("-1 %s %lu\n", "6f7574707574", (unsigned long)sizeof out); /* "output": int32, host order */
        fwrite(out, 1, sizeof out, stdout);
    }
    fclose(f);
    return 0;
}
"""


def _host_run(ig: IntGraph, name: str, pixels: np.ndarray, folder: Path, tool: str, extra=()) -> list[list[tuple]]:
    """Generate, compile with `tool` (gcc: C99; g++: every file as C++11; `extra` flags added), run
    on `pixels`; per image the (index, name, codes) the hook printed, then (-1, "output", the int32 output)."""
    write_csource(ig, name, folder)
    (folder / "main.c").write_text(MAIN.replace("UNAME", name.upper()).replace("NAME", name))
    flags = [*GCC] if tool == "gcc" else [*GXX, "-x", "c++"]
    compile_c([*flags, "-O1", *extra, "-o", "prog", "main.c", f"{name}_inference.c"], folder, tool)
    (folder / "images.bin").write_bytes(np.ascontiguousarray(pixels, np.uint8).tobytes())
    res = subprocess.run([str(folder / "prog"), "images.bin"], cwd=folder, capture_output=True, timeout=300)
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    data, at, images, current = res.stdout, 0, [], []
    while at < len(data):
        end = data.index(b"\n", at)
        k, node, n = data[at:end].decode().split(" ")
        node = bytes.fromhex(node).decode("utf-8")
        codes = np.frombuffer(data[end + 1:end + 1 + int(n)], np.int32 if k == "-1" else np.uint8)
        at = end + 1 + int(n)
        current.append((int(k), node, codes))
        if k == "-1":
            images.append(current)
            current = []
    assert current == [] and len(images) == len(pixels)
    return images


def assert_bit_exact(ig: IntGraph, pixels: np.ndarray, images: list[list[tuple]], want=None) -> None:
    """`want`: run_integer(ig, pixels), when the caller has it already."""
    want = run_integer(ig, pixels) if want is None else want
    for i, dumped in enumerate(images):
        assert [(k, n) for k, n, _ in dumped] == [(k, n.name) for k, n in enumerate(ig.nodes)] + [(-1, "output")]
        for k, name, codes in dumped:
            ref = want[ig.output if k == -1 else name][i].ravel()
            np.testing.assert_array_equal(codes, ref, err_msg=f"image {i}, node {name}")


# ---------------------------------------------------------------------------------------------
# the graphs


@pytest.fixture(scope="module")
def lenet_graph():
    x, _ = digits_test_split()
    qm = onnx_qmodel(LENET, bits=8).quantized
    cal = calibrate(qm, x[:100, None], progress=False)
    return lower(qm, cal), x[100:116, None]  # 16 real digits the calibration did not see


@pytest.fixture(scope="module")
def mobilenet_graph(tmp_path_factory):
    p = tmp_path_factory.mktemp("mnet") / "m.pth"
    torch.save(make_state("mobilenet_v1", {"num_classes": 10}), p)
    qm = onnx_qmodel(p, plan="seed").quantized
    rng = np.random.default_rng(0)
    cal = calibrate(qm, rng.integers(0, 256, (12, 3, 32, 32)).astype(np.uint8), mean=(0.5,), std=(0.25,),
                    progress=False)  # fmt: skip
    return lower(qm, cal), rng.integers(0, 256, (8, 3, 32, 32)).astype(np.uint8)


def _random_images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)


@pytest.fixture(scope="module")
def vgg_graph(tmp_path_factory):
    """The binary VGG (CIFAR-10, infl_ratio 1, one linear classifier) through lower(): BN + sign
    thresholds on every conv's accumulator, three of them max/min pooled; 4 random images."""
    p = tmp_path_factory.mktemp("vgg") / "v.pth"
    torch.save(make_state("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}), p)
    qm = onnx_qmodel(p, plan="seed").quantized
    cal = calibrate(qm, _random_images(1, 4), mean=(0.0,), std=(1.0,), progress=False)
    return lower(qm, cal), _random_images(2, 4)


@pytest.fixture(scope="module")
def resnet_graph(tmp_path_factory):
    """A small ResNet18 BNN (widths 8, 8, 16, 16), every layer binary: thresholds on codes, PReLU,
    adds, average-pooled downsampling."""
    p = tmp_path_factory.mktemp("resnet") / "r.pth"
    torch.save(make_state("resnet18_bnn", {"num_classes": 10, "widths": (8, 8, 16, 16)}), p)
    qm = onnx_qmodel(p, bits=1, only=("*",)).quantized
    cal = calibrate(qm, _random_images(3, 4), mean=(0.0,), std=(1.0,), progress=False)
    ig, x = lower(qm, cal), _random_images(4, 4)
    return ig, x, run_integer(ig, x)


def _conv(name, src, rng, cin, shape_in, cout, k, stride, pad, dil, groups, acc_bits, wmax, bmax, zin, zout,
          lo=0, hi=255):  # fmt: skip
    h = (shape_in[1] + 2 * pad[0] - dil[0] * (k - 1) - 1) // stride[0] + 1
    w = (shape_in[2] + 2 * pad[1] - dil[1] * (k - 1) - 1) // stride[1] + 1
    arrays = {"w_minus_z": rng.integers(-wmax, wmax + 1, (cout, cin // groups, k, k)).astype(np.int32),
              "b_q": rng.integers(-bmax, bmax + 1, cout).astype(np.int64),
              "m": rng.integers(1, 1 << 12, cout).astype(np.int64), "s": rng.integers(0, 44, cout).astype(np.int64)}
    attrs = {"mode": "requantize", "zero_in": zin, "zero_out": zout, "lo": lo, "hi": hi, "acc_bits": acc_bits, "stride": stride,
             "padding": pad, "dilation": dil, "groups": groups}  # fmt: skip
    arrays["s"][0] = 0  # s = 0 leaves the product
    return IntNode(name, "conv2d", (src,), (cout, h, w), QTensor(0.1, zout), attrs, arrays)


TABLE = 'b.table */ "q\\" ??/\n\u00e9'  # hostile node names: comment ends, quotes, a trigraph, UTF-8
ADD = "c/*add*/"


I32 = (-(1 << 31), (1 << 31) - 1)


def _thresholds(values: np.ndarray, lo_hi=I32) -> tuple[np.ndarray, np.ndarray]:
    """(tau, flip) per channel (axis 1): channels 0..3 at the extremes lo, hi, lo, hi with flip
    0, 0, 1, 1 (codes always 2, never, never, always 2); the others at the median of `values` (both
    codes occur) with flip alternating."""
    c = values.shape[1]
    tau = np.median(np.moveaxis(values, 1, 0).reshape(c, -1), axis=1).round().astype(np.int64)
    tau[:4] = (lo_hi[0], lo_hi[1], lo_hi[0], lo_hi[1])
    flip = (np.arange(c) % 2).astype(np.uint8)
    flip[:4] = (0, 0, 1, 1)
    return tau, flip


def _sign(node: IntNode, values: dict, lo_hi=I32, **pool) -> IntNode:
    """`node` (a weighted op; its b_q, m, s dropped) in sign mode: thresholds from its accumulators
    on `values` (the graph's codes so far), optionally pooled."""
    from qexport.integer.run import _accumulate

    tau, flip = _thresholds(_accumulate(node, values[node.inputs[0]]), lo_hi)
    attrs = {k: v for k, v in node.attrs.items() if k not in ("zero_out", "lo", "hi")}
    attrs.update(mode="sign", **pool)
    shape = node.output_shape
    if pool:
        (kh, kw), (sh, sw) = pool["pool_kernel"], pool["pool_stride"]
        shape = (shape[0], (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1)
    arrays = {"w_minus_z": node.arrays["w_minus_z"], "tau": tau, "flip": flip}
    return IntNode(node.name, node.op, node.inputs, shape, QTensor(1.0, 1), attrs, arrays)


def _sign_nodes(n: list[IntNode], rng, pixels) -> list[IntNode]:
    """BN + sign on the accumulator (unpooled with int64 tau and accumulator, pooled 2 x 2 and an
    overlapping 3 x 2 / stride (2, 1) window with int32 tau at the int32 extremes, a linear),
    threshold on codes (tau at the extremes, flip both ways) and PReLU with negative, positive and
    zero-shift m_neg."""
    out: list[IntNode] = []

    def values():
        return run_integer(IntGraph(tuple(n + out), (4, 11, 9), QTensor(0.01, 17), (n + out)[-1].name), pixels)

    big = _conv("e.sign64", "a.clamp", rng, 6, (6, 6, 9), 8, 3, (1, 1), (1, 1), (1, 1), 2, 64, 40000, 0, 90, 0)
    out.append(_sign(big, values(), lo_hi=(-(1 << 40), 1 << 40)))  # tau int64
    for name, pool in (("e.pool2", {"pool_kernel": (2, 2), "pool_stride": (2, 2)}),
                       ("e.pool32", {"pool_kernel": (3, 2), "pool_stride": (2, 1)})):  # fmt: skip
        c = _conv(name, "e.sign64", rng, 8, (8, 6, 9), 8, 3, (1, 1), (1, 1), (1, 1), 1, 32, 1, 0, 1, 0)
        out.append(_sign(c, values(), **pool))
    lin = IntNode("e.linsign", "linear", ("d.flat",), (5,), QTensor(1.0, 1),
                  {"mode": "requantize", "zero_in": 77, "acc_bits": 32, "zero_out": 0, "lo": 0, "hi": 255},
                  {"w_minus_z": rng.integers(-100, 101, (5, 6)).astype(np.int32)})  # fmt: skip
    out.append(_sign(lin, values()))
    spread = _conv("g.conv", "input", rng, 4, (4, 11, 9), 6, 1, (1, 1), (0, 0), (1, 1), 1, 32, 2, 0, 17, 128)
    spread.arrays.update(m=np.ones(6, np.int64), s=np.full(6, 2, np.int64))  # codes over the whole 0..255
    out.append(spread)
    v = values()
    for src in ("g.conv", "d.flat"):
        tau, flip = _thresholds(v[src].astype(np.int64))
        out.append(IntNode(f"f.thr.{src}", "threshold", (src,), v[src].shape[1:], QTensor(1.0, 1), {},
                           {"tau": tau, "flip": flip}))  # fmt: skip
    m_neg = np.array([-40000, 3000, -1, 70000, 0, -123457], np.int64)
    out.append(IntNode("g.prelu", "prelu", ("g.conv",), (6, 11, 9), QTensor(0.05, 100), {"zero_in": 128, "zero_out": 100},
                       {"m_pos": np.array([200001], np.int64), "s_pos": np.array([16], np.int64), "m_neg": m_neg,
                        "s_neg": np.array([16, 11, 0, 17, 3, 19], np.int64)}))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def synthetic_graph():
    """Every op and C type the networks above miss; large weights and shifts so that the int64
    products are negative and odd halves occur (the rshift of negative values is exercised);
    node names that C comments and strings must escape."""
    rng = np.random.default_rng(7)
    n = [_conv("a.conv", "input", rng, 4, (4, 11, 9), 6, 3, (2, 1), (2, 1), (2, 1), 2, 64, 1 << 20, 1 << 40, 17, 90)]
    n.append(IntNode("a.clamp", "clamp", ("a.conv",), n[-1].output_shape, n[-1].out, {"lo": 90, "hi": 200}))
    n.append(_conv("b.conv", "a.clamp", rng, 6, n[-1].output_shape, 6, 3, (1, 1), (1, 1), (1, 1), 6, 32, 100, 5000,
                   90, 100, 100, 180))  # fmt: skip
    n.append(IntNode("b.max", "max_pool2d", ("b.conv",), (6, 3, 5), n[-1].out,
                     {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 2)}))  # fmt: skip
    n.append(IntNode("b.avg", "avg_pool2d", ("a.clamp",), (6, 3, 5), n[1].out,
                     {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}))  # fmt: skip
    n.append(IntNode(TABLE, "table", ("b.avg",), (6, 3, 5), QTensor(0.2, 3),
                     {}, {"table": rng.integers(0, 256, 256).astype(np.uint8)}))  # fmt: skip
    n.append(IntNode("b.shuffle", "channel_shuffle", (TABLE,), (6, 3, 5), n[-1].out, {"groups": 3}))
    n.append(_conv("c.conv", "b.max", rng, 6, (6, 3, 5), 6, 3, (1, 1), (1, 1), (1, 1), 1, 32, 127, 300, 100, 40))
    n.append(IntNode(ADD, "add", ("b.shuffle", "c.conv"), (6, 3, 5), QTensor(0.3, 77),
                     {"zero_a": 3, "zero_b": 40, "zero_out": 77},
                     {"m_a": np.int64(40000), "s_a": np.int64(17), "m_b": np.int64(3),
                      "s_b": np.int64(0)}))  # fmt: skip
    n.append(IntNode("d.gap", "global_avg_pool2d", (ADD,), (6, 1, 1), n[-1].out))
    n.append(IntNode("d.flat", "reshape", ("d.gap",), (6,), n[-1].out))
    lin = {"w_minus_z": rng.integers(-40000, 40000, (5, 6)).astype(np.int32),
           "b_q": rng.integers(-(1 << 35), 1 << 35, 5).astype(np.int64),
           "m": rng.integers(1, 1 << 10, 5).astype(np.int64), "s": rng.integers(20, 50, 5).astype(np.int64)}
    n.append(IntNode("d.out", "linear", ("d.flat",), (5,), QTensor(0.5, 60),
                     {"mode": "requantize", "zero_in": 77, "zero_out": 60, "lo": 0, "hi": 255, "acc_bits": 64}, lin))  # fmt: skip
    pixels = rng.integers(0, 256, (6, 4, 11, 9)).astype(np.uint8)
    n += _sign_nodes(n, rng, pixels)
    ig = IntGraph(tuple(n), (4, 11, 9), QTensor(0.01, 17), "d.out")
    codes = run_integer(ig, pixels)
    assert all(codes[m.name].shape[1:] == tuple(m.output_shape) for m in ig.nodes)
    return ig, pixels


# ---------------------------------------------------------------------------------------------
# bit-exact runs


@pytest.mark.parametrize("tool", ["gcc", "g++"])
def test_lenet_c_equals_run_integer_on_real_digits(lenet_graph, tmp_path, tool):
    ig, x = lenet_graph
    assert_bit_exact(ig, x, _host_run(ig, "lenet", x, tmp_path, tool))


@pytest.mark.parametrize("tool", ["gcc", "g++"])
def test_mobilenet_c_equals_run_integer_node_by_node(mobilenet_graph, tmp_path, tool):
    ig, x = mobilenet_graph
    assert [n.op for n in ig.nodes].count("conv2d") == 27
    assert_bit_exact(ig, x, _host_run(ig, "mobilenet", x, tmp_path, tool))


def test_binary_vgg_c_equals_run_integer_node_by_node(vgg_graph, tmp_path):
    """gcc (C99) and g++ (C++11) at once: a 17 MB .c of weights takes ~12 s to compile, and
    run_integer ~13 s, so the two builds and the reference run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    ig, x = vgg_graph
    signs = [n for n in ig.nodes if n.attrs.get("mode") == "sign"]
    assert len(signs) == 6 and sum("pool_kernel" in n.attrs for n in signs) == 3
    assert {int(f) for n in signs for f in np.asarray(n.arrays["flip"])} == {0, 1}
    for tool in ("gcc", "g++"):
        (tmp_path / tool).mkdir()
    with ThreadPoolExecutor(2) as pool:
        runs = {tool: pool.submit(_host_run, ig, "vgg", x, tmp_path / tool, tool) for tool in ("gcc", "g++")}
        want = run_integer(ig, x)
        for tool, run in runs.items():
            assert_bit_exact(ig, x, run.result(), want)


@pytest.mark.parametrize("tool", ["gcc", "g++"])
def test_resnet18_bnn_c_equals_run_integer_node_by_node(resnet_graph, tmp_path, tool):
    ig, x, want = resnet_graph
    ops = [n.op for n in ig.nodes]
    assert ops.count("threshold") == 16 and ops.count("prelu") == 16 and ops.count("add") == 16
    assert any((np.asarray(n.arrays["flip"]) == 1).any() for n in ig.nodes if n.op == "threshold")
    assert_bit_exact(ig, x, _host_run(ig, "resnet", x, tmp_path, tool), want)


@pytest.mark.parametrize("tool", ["gcc", "g++"])
def test_synthetic_graph_covers_every_op_and_type(synthetic_graph, tmp_path, tool):
    ig, x = synthetic_graph
    c = generate(ig, "syn")["syn_inference.c"].decode()
    for kernel in ("qx_conv_w32_b64_a64", "qx_conv_w8_b32_a32", "qx_max_pool", "qx_avg_pool",
                   "qx_table", "qx_shuffle", "qx_add", "qx_clamp_codes", "qx_global_avg", "qx_copy",
                   "qx_conv_sign_w32_t64_a64", "qx_conv_sign_w8_t32_a32", "qx_threshold_t32", "qx_prelu"):  # fmt: skip
        assert f"static void {kernel}(" in c, kernel
    assert_bit_exact(ig, x, _host_run(ig, "syn", x, tmp_path, tool))


RSHIFT_MAIN = r"""
#include <stdio.h>
#include "syn_inference.c"
int main(void)
{
    long long v;
    unsigned s;
    while (scanf("%lld %u", &v, &s) == 2)
        printf("%lld\n", (long long)qx_rshift((int64_t)v, s));
    return 0;
}
"""


def test_c_rshift_is_floor_division_on_negative_values(synthetic_graph, tmp_path):
    """qx_rshift (portable: no right shift of a negative signed value) against Python ints."""
    write_csource(synthetic_graph[0], "syn", tmp_path)
    (tmp_path / "r.c").write_text(RSHIFT_MAIN)
    compile_c([*GCC, "-Wno-unused-function", "-o", "r", "r.c"], tmp_path)
    rnd = random.Random(3)
    cases = [(v, s) for v in (0, 1, -1, 2, -2, 3, -3, (1 << 61), -(1 << 61), (1 << 62) - 1, -(1 << 62))
             for s in (0, 1, 2, 31, 40, 62)]  # fmt: skip
    cases += [(rnd.randrange(-(1 << 62), 1 << 62) >> rnd.randrange(0, 62), rnd.randrange(0, 63)) for _ in range(2000)]
    cases += [((2 * rnd.randrange(-1000, 1000) + 1) << (s - 1), s) for s in range(1, 40) for _ in range(5)]  # halves
    res = subprocess.run(["./r"], cwd=tmp_path, input="".join(f"{v} {s}\n" for v, s in cases), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    got = [int(t) for t in res.stdout.split()]
    want = [v if s == 0 else (v + (1 << (s - 1))) // (1 << s) for v, s in cases]
    assert res.returncode == 0 and got == want


# ---------------------------------------------------------------------------------------------
# Cortex-M4, layout, bytes


def _arm_object(ig, name, folder):
    write_csource(ig, name, folder)
    compile_c([*ARM, "-c", "-o", f"{name}.o", f"{name}_inference.c"], folder, "arm-none-eabi-gcc")
    size = subprocess.run(["arm-none-eabi-size", f"{name}.o"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert size.returncode == 0, size.stderr
    text, data, bss = (int(v) for v in size.stdout.splitlines()[1].split()[:3])
    return text, data, bss


def test_cortex_m4_objects(lenet_graph, mobilenet_graph, synthetic_graph, resnet_graph, tmp_path):
    """arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os -std=c99 -pedantic -Werror: parameters in
    flash (text), nothing in data, the arena (and the hook pointer) in bss."""
    ig = lenet_graph[0]
    text, data, bss = _arm_object(ig, "lenet", tmp_path)
    params = sum(a.size * (1 if k == "w_minus_z" else 4 if k in ("b_q", "m") else 1) + 4 * a.shape[0] * (k == "w_minus_z")
                 for n in ig.nodes for k, a in n.arrays.items())  # uint8 weight codes + an int32 zero point per channel
    assert all(np.ptp(n.arrays["w_minus_z"].reshape(len(n.arrays["w_minus_z"]), -1), axis=1).max() <= 255
               for n in ig.nodes if "w_minus_z" in n.arrays)  # 8-bit codes: every channel spans <= 256 values
    assert params <= text < params + 8192 and data == 0
    assert plan_arena(ig).size <= bss <= plan_arena(ig).size + 16
    _arm_object(synthetic_graph[0], "syn", tmp_path)
    text, data, bss = _arm_object(resnet_graph[0], "resnet", tmp_path)  # thresholds, PReLU, packed binary convs
    rg = resnet_graph[0]
    shapes = {"input": rg.input_shape, **{n.name: n.output_shape for n in rg.nodes}}
    packed = [shapes[n.inputs[0]] for n in rg.nodes if n.op == "conv2d" and n.attrs["zero_in"] == 1
              and np.abs(n.arrays["w_minus_z"]).min() == 1]  # +1/-1 convs reading thresholds' sign codes
    assert len(packed) == 16
    ram = plan_arena(rg).size + max(4 * -(-c // 32) * h * w for c, h, w in packed)  # + qx_bits, a bit per code
    assert data == 0 and ram <= bss <= ram + 16
    text, data, bss = _arm_object(mobilenet_graph[0], "mobilenet", tmp_path)
    assert data == 0 and plan_arena(mobilenet_graph[0]).size <= bss <= plan_arena(mobilenet_graph[0]).size + 16


def test_arena_is_laid_out_by_liveness(lenet_graph, mobilenet_graph, synthetic_graph, resnet_graph):
    for ig in (lenet_graph[0], mobilenet_graph[0], synthetic_graph[0], resnet_graph[0]):
        arena = plan_arena(ig)
        check_arena(ig, arena)  # no two live buffers overlap
        biggest_pair = max(arena.sizes[a.name] + arena.sizes[b.name] for a, b in zip(ig.nodes, ig.nodes[1:]))
        assert biggest_pair <= arena.size + 3 * len(ig.nodes) and arena.size < sum(arena.sizes.values())
    lenet = plan_arena(lenet_graph[0])
    assert lenet.size == 6 * 28 * 28 + 6 * 14 * 14  # c1 and s2 live together; the rest reuses them


def test_generated_files_are_deterministic_and_declare_the_api(lenet_graph, tmp_path):
    ig = lenet_graph[0]
    files = generate(ig, "lenet")
    assert sorted(files) == ["lenet_inference.c", "lenet_inference.h"] and generate(ig, "lenet") == files
    h, c = files["lenet_inference.h"].decode(), files["lenet_inference.c"].decode()
    assert "int lenet_run(const uint8_t *input, int32_t *output);" in h
    assert "typedef void (*lenet_hook)(int node, const char *name, const uint8_t *codes, size_t n);" in h
    assert f"#define LENET_ARENA_SIZE {plan_arena(ig).size}\n" in h and "#define LENET_OUTPUT_SIZE 10\n" in h
    code = re.sub(r"/\*.*?\*/", "", c + h, flags=re.S)  # comments removed
    for banned in ("malloc", "float", "double", "free"):
        assert not re.search(rf"\b{banned}\b", code), banned
    written = write_csource(ig, "lenet", tmp_path)
    assert [p.read_bytes() for p in written] == [files[p.name] for p in written]
    for bad in ("9lives", "le net", "qx", "qx_net", ""):
        with pytest.raises(UsageError, match="C identifier"):
            generate(ig, bad)


# ---------------------------------------------------------------------------------------------
# QEMU: the LeNet C on a Cortex-M4 (mps2-an386), bare metal, semihosting printf

QEMU_MAIN = r"""
#include <stdio.h>
#include "lenet_inference.h"
#include "digits.h"
static unsigned long sums[LENET_NODE_COUNT];
static void node_sum(int node, const char *name, const uint8_t *codes, size_t n)
{
    size_t i;
    (void)name;
    sums[node] = 0;
    for (i = 0; i < n; i++)
        sums[node] += codes[i];
}
int main(void)
{
    static int32_t out[LENET_OUTPUT_SIZE];
    int i, j;
    lenet_set_hook(node_sum);
    for (i = 0; i < DIGITS; i++) {
        if (lenet_run(digits[i], out) != 0)
            return 1;
        printf("image %d:", i);
        for (j = 0; j < LENET_OUTPUT_SIZE; j++)
            printf(" %ld", (long)out[j]);
        printf(" sums:");
        for (j = 0; j < LENET_NODE_COUNT; j++)
            printf(" %lu", sums[j]);
        printf("\n");
    }
    return 0;
}
"""


def test_lenet_on_a_cortex_m4_in_qemu(lenet_graph, tmp_path):
    """arm-none-eabi-gcc -O2 bare metal (vector table, reset handler, rdimon semihosting), 8 real
    digits compiled in as a const array; QEMU mps2-an386 prints each digit's output codes and the
    sum of every node's codes: all equal run_integer, and the program exits 0."""
    from qemu_support import images_header, run_on_cortex_m4

    ig, x = lenet_graph
    x = x[:8]
    write_csource(ig, "lenet", tmp_path)
    (tmp_path / "digits.h").write_text(images_header(x, "digits"))
    (tmp_path / "main.c").write_text(QEMU_MAIN)
    res = run_on_cortex_m4(tmp_path, ["lenet_inference.c", "main.c"])
    assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    want = run_integer(ig, x)
    expected = []
    for i in range(len(x)):
        sums = " ".join(str(int(want[n.name][i].astype(np.int64).sum())) for n in ig.nodes)
        expected.append(f"image {i}: {' '.join(map(str, want[ig.output][i].tolist()))} sums: {sums}")
    assert res.stdout.splitlines() == expected
