"""qexport csource beyond the kernels of tests/test_csource.py: the cat kernel (a traced module
with cat, gcc, node by node against run_integer), 8-bit weights stored as uint8 codes with a
per-channel zero point (smaller flash, still bit-exact), the parameter header written beside the
C (the bytes `qexport cheader` writes), the flash/RAM report (parameter and arena bytes against
the symbol sizes `nm` reads from the compiled object; the stack bound against
`arm-none-eabi-gcc -fstack-usage`), refusals that write nothing, and MobileNetV1 under QEMU.

Expected values come from run_integer, nm, arm-none-eabi-gcc or the cheader command, never from
the generated text."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from test_csource import _host_run, assert_bit_exact, mobilenet_graph, synthetic_graph  # noqa: F401 (fixtures)
from test_integer_graph import INCEPTION

from cheader_support import ARM, GCC, compile_c
from conftest import FIXTURES, LENET, import_file, run_cli
from qexport.csource import generate, write_csource
from qexport.csource.footprint import STACK_BOUND, footprint
from qexport.errors import UsageError
from qexport.integer.calibrate import calibrate
from qexport.integer.ir import IntGraph, IntNode, QTensor
from qexport.integer.lower import lower
from qexport.integer.run import run_integer
from qemu_support import images_header, run_on_cortex_m4
from tools import require_tool


@pytest.fixture(scope="module")
def cat_graph(tmp_path_factory):
    import torch

    from qexport.prepare import prepare

    folder = tmp_path_factory.mktemp("inc")
    (folder / "inc.py").write_text(INCEPTION)
    mod = import_file(folder / "inc.py", "inc_for_csource")
    torch.manual_seed(3)
    torch.save(mod.Inc().state_dict(), folder / "inc.pth")
    qm = prepare(folder / "inc.pth", command="csource",
                 plan_kw={"bits": 8, "model_def": f"{folder / 'inc.py'}:Inc"}).quantized  # fmt: skip
    rng = np.random.default_rng(5)
    ig = lower(qm, calibrate(qm, rng.integers(0, 256, (16, 3, 12, 12)).astype(np.uint8), progress=False))
    return ig, rng.integers(0, 256, (6, 3, 12, 12)).astype(np.uint8)


def test_cat_c_equals_run_integer_node_by_node(cat_graph, tmp_path):
    ig, x = cat_graph
    cat = next(n for n in ig.nodes if n.op == "cat")
    assert len(cat.inputs) == 2 and len(set(cat.attrs["zeros_in"])) == 2  # two different input zero points
    assert "static void qx_requantize(" in generate(ig, "inc")["inc_inference.c"].decode()
    assert_bit_exact(ig, x, _host_run(ig, "inc", x, tmp_path, "gcc"))


def _symbol_sizes(obj) -> dict[str, int]:
    res = subprocess.run([require_tool("nm"), "-S", str(obj)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return {f[3]: int(f[1], 16) for f in (line.split() for line in res.stdout.splitlines()) if len(f) == 4}


def test_weights_are_uint8_codes_and_the_report_counts_the_symbols(mobilenet_graph, tmp_path):
    """MobileNetV1 --plan seed (8-bit affine): every conv's weights take one byte each (uint8 codes
    with an int32 zero point per channel, or int8 w - Z_w where that fits); the report's parameter bytes
    equal the sizes of the qx_n* objects in the gcc object file and its arena the qx_arena's."""
    ig = mobilenet_graph[0]
    c = generate(ig, "mnet")["mnet_inference.c"].decode()
    weighted = [n for n in ig.nodes if "w_minus_z" in n.arrays]
    types = re.findall(r"static const (\w+) qx_n\d+_w\[", c)
    assert len(types) == len(weighted) and set(types) == {"uint8_t", "int8_t"}  # int8: w - Z_w fits as it is
    assert len(re.findall(r"static const int32_t qx_n\d+_z\[", c)) == types.count("uint8_t")
    write_csource(ig, "mnet", tmp_path)
    compile_c([*GCC, "-O0", "-c", "-o", "m.o", "mnet_inference.c"], tmp_path)
    sizes = _symbol_sizes(tmp_path / "m.o")
    fp = footprint(ig)
    assert fp.parameter_bytes == sum(v for k, v in sizes.items() if re.fullmatch(r"qx_n\d+_\w+", k))
    assert fp.arena_bytes == sizes["qx_arena"]
    weights = sum(sizes[f"qx_n{k}_w"] for k, n in enumerate(ig.nodes) if "w_minus_z" in n.arrays)
    assert weights == sum(n.arrays["w_minus_z"].size for n in weighted)
    assert [a for _, _, a in fp.accumulators if a != "-"] == [f"int{n.attrs['acc_bits']}" for n in weighted]


# the functions a kernel calls (their frames stack on the kernel's unless inlined)
CALLEES = ("qx_rshift", "qx_clamp", "qx_window_at", "qx_bin_acc", "qx_popcount")


@pytest.mark.parametrize("net", ["mnet", "syn"])
def test_stack_bound_holds_for_the_cortex_m4_build(net, mobilenet_graph, synthetic_graph, tmp_path):
    """-fstack-usage at -O2 and -Os: the run function's frame + the largest kernel frame + every
    function a kernel calls (accumulation, window, rshift, clamp; counted even when inlined) stays
    within STACK_BOUND; MobileNetV1 and
    the synthetic graph of every kernel kind (int64 accumulators, sign mode, pooled)."""
    ig = (mobilenet_graph if net == "mnet" else synthetic_graph)[0]
    write_csource(ig, "mnet", tmp_path)
    for opt in ("-O2", "-Os"):
        compile_c([*ARM, opt, "-fstack-usage", "-c", "-o", "m.o", "mnet_inference.c"], tmp_path, "arm-none-eabi-gcc")
        frames = {}
        for line in (tmp_path / "m.su").read_text().splitlines():
            where, size, kind = line.split("\t")
            assert kind.startswith("static"), line  # no dynamic (alloca / VLA) frames
            frames[where.rsplit(":", 1)[-1]] = int(size)
        run = frames.pop("mnet_run")
        # what a kernel calls (counted even when inlined): one accumulation, the window, rshift, clamp
        helpers = max([frames.pop(h) for h in list(frames) if h.startswith("qx_acc_")], default=0) + \
            sum(frames.pop(h, 0) for h in CALLEES)
        assert run + max(frames.values()) + helpers <= STACK_BOUND, (opt, run, frames, helpers)


def test_parameter_header_is_what_cheader_writes_and_verbose_reports(tmp_path):
    data = FIXTURES / "digits_test.npz"
    r = run_cli("csource", LENET, "--bits", "8", "--calibrate", data, "--calibration-samples", "32", "-o",
                tmp_path / "c", "--name", "lenet", "-v")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["lenet.h", "lenet_inference.c", "lenet_inference.h"]
    r2 = run_cli("cheader", LENET, "--bits", "8", "-o", tmp_path / "lenet.h")
    assert r2.returncode == 0, r2.stderr
    assert (tmp_path / "c" / "lenet.h").read_bytes() == (tmp_path / "lenet.h").read_bytes()
    compile_c([*GCC, "-O0", "-c", "-o", "l.o", "lenet_inference.c"], tmp_path / "c")
    sizes = _symbol_sizes(tmp_path / "c" / "l.o")
    params = sum(v for k, v in sizes.items() if re.fullmatch(r"qx_n\d+_\w+", k))
    assert f"flash: {params} B parameters" in r.stderr and f"RAM:   {sizes['qx_arena']} B arena" in r.stderr
    assert re.search(r"^c1 +conv2d +int32$", r.stderr, re.M)


def test_inspect_calibrate_prints_the_footprint(tmp_path):
    r = run_cli("inspect", LENET, "--bits", "8", "--calibrate", FIXTURES / "digits_test.npz",
                "--calibration-samples", "32")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "B parameters" in r.stdout and "B arena" in r.stdout and re.search(r"^f6 +linear +int32$", r.stdout, re.M)


def _one_conv(mode: str) -> IntGraph:
    arrays = {"w_minus_z": np.ones((2, 1, 1, 1), np.int32), "b_q": np.zeros(2, np.int64),
              "m": np.ones(2, np.int64), "s": np.zeros(2, np.int64)}  # fmt: skip
    attrs = {"mode": mode, "zero_in": 0, "zero_out": 0, "lo": 0, "hi": 255, "acc_bits": 32, "stride": (1, 1),
             "padding": (0, 0), "dilation": (1, 1), "groups": 1}  # fmt: skip
    node = IntNode("conv/odd", "conv2d", ("input",), (2, 2, 2), QTensor(1.0, 0), attrs, arrays)
    return IntGraph((node,), (1, 2, 2), QTensor(1.0, 0), "conv/odd")


def test_unknown_mode_or_op_is_refused_by_node_and_nothing_is_written(tmp_path):
    with pytest.raises(UsageError, match=r"node conv/odd \(conv2d\): no C kernel for mode 'bogus'"):
        write_csource(_one_conv("bogus"), "net", tmp_path)
    g = _one_conv("requantize")
    odd = IntNode("soft", "softmax", ("conv/odd",), (2, 2, 2), QTensor(1.0, 0))
    with pytest.raises(UsageError, match=r"node soft \(softmax\): no C kernel"):
        write_csource(IntGraph((*g.nodes, odd), g.input_shape, g.input, "soft"), "net", tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert run_integer(g, np.zeros((1, 1, 2, 2), np.uint8))["conv/odd"].shape == (1, 2, 2, 2)  # the graph is valid


QEMU_MAIN = r"""
#include <stdio.h>
#include "mnet_inference.h"
#include "images.h"
int main(void)
{
    static int32_t out[MNET_OUTPUT_SIZE];
    int i, j;
    for (i = 0; i < IMAGES; i++) {
        if (mnet_run(images[i], out) != 0)
            return 1;
        printf("image %d:", i);
        for (j = 0; j < MNET_OUTPUT_SIZE; j++)
            printf(" %ld", (long)out[j]);
        printf("\n");
    }
    return 3; /* checked: the exit status reaches the host */
}
"""


def test_mobilenet_on_a_cortex_m4_in_qemu(mobilenet_graph, tmp_path):
    """MobileNetV1 (~3.2 M uint8 weight codes: fits the 4 MiB flash of tests/c/cortex_m4.ld) bare
    metal in QEMU mps2-an386 on 2 random images: the printed output codes equal run_integer and
    main's return value 3 is QEMU's exit status."""
    ig, x = mobilenet_graph
    x = x[:2]
    write_csource(ig, "mnet", tmp_path)
    (tmp_path / "images.h").write_text(images_header(x))
    (tmp_path / "main.c").write_text(QEMU_MAIN)
    res = run_on_cortex_m4(tmp_path, ["mnet_inference.c", "main.c"], timeout=300)
    assert res.returncode == 3, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    want = run_integer(ig, x)[ig.output]
    expected = [f"image {i}: {' '.join(map(str, want[i].ravel().tolist()))}" for i in range(len(x))]
    assert res.stdout.splitlines() == expected
