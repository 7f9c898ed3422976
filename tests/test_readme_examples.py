"""The README's "Reading the outputs back" blocks, run exactly as written.

Each block is found by its `readme-example: NAME` first line, run in a scratch folder where
`fixtures/` is the repository's, after the `export` block; its result is compared with the
quantized model computed here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import LENET, ROOT
from tools import require_tool

BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def readme_blocks() -> dict[str, str]:
    blocks = {}
    for _lang, body in BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        found = re.search(r"readme-example: (\w+)", body.splitlines()[0] if body else "")
        if found:
            blocks[found.group(1)] = body
    return blocks


BLOCKS = readme_blocks()


def run(argv, cwd, **kw):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "fixtures").symlink_to(ROOT / "fixtures")
    r = run(["bash", "-euo", "pipefail", "-c", BLOCKS["export"]], d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def qmodel():
    from qexport.export import load_model, plan_options_from, quantize

    return quantize(load_model(LENET), plan_options_from(bits=8))


def test_every_example_is_present():
    assert set(BLOCKS) == {"export", "defaults", "octave", "python", "c", "onnx", "verilog"}


def test_defaults_example_writes_what_it_says(exported):
    import torch
    from scipy.io import loadmat

    from qexport.export import load_model, plan_options_from, quantize

    r = run(["bash", "-euo", "pipefail", "-c", BLOCKS["defaults"]], exported)
    assert r.returncode == 0, r.stderr
    state = torch.load(LENET, weights_only=True)
    mat = loadmat(exported / "trained.mat")
    for name, t in state.items():  # as trained: float32, the checkpoint's values
        var = mat[name.replace(".", "_")]
        assert var.dtype == np.float32 and np.array_equal(var.reshape(t.shape), t.numpy()), name
        npy = np.load(exported / "trained_npy" / f"{name}.npy", allow_pickle=False)
        assert npy.dtype == np.float32 and np.array_equal(npy, t.numpy()), name
    seed = quantize(load_model(LENET), plan_options_from(plan="seed"))
    for layer in ("c1", "c3", "c5", "f6", "output"):
        codes = np.load(exported / "seed_npy" / f"{layer}.weight.npy", allow_pickle=False)
        assert codes.dtype == np.uint8 and np.array_equal(codes, seed.tensor(f"{layer}.weight").data), layer
        bias = np.load(exported / "seed_npy" / f"{layer}.bias.npy", allow_pickle=False)
        assert bias.dtype == np.int32
    assert "using --plan seed" in r.stderr and (exported / "golden").is_dir()


def test_python_example(exported):
    r = run([sys.executable, "-c", BLOCKS["python"]], exported)
    assert r.returncode == 0, r.stderr


def test_octave_example(exported, qmodel):
    octave = require_tool("octave")
    (exported / "example.m").write_text(BLOCKS["octave"])
    r = run([octave, "--no-gui", "--no-window-system", "-q", "example.m"], exported)
    assert r.returncode == 0, r.stdout + r.stderr  # Octave prints X11 noise on stderr even on success
    c1 = qmodel.quant_layer("c1").params
    assert f"affine: q - {int(c1['zero_point'])}, scale ~ {int(c1['multiplier'])} >> {int(c1['shift'])}" in r.stdout


def test_c_example_matches_the_integer_reference(exported, qmodel):
    from qexport.quantize.reference import lenet_forward_int

    gcc = require_tool("gcc")
    images = np.load(ROOT / "fixtures" / "digits_test.npz")["images"][:6]
    ref = lenet_forward_int(qmodel, images[:, None])
    f6, expected = ref["f6"], ref["output"]
    assert np.abs(f6).max() < 2**31 and np.abs(expected).max() < 2**31
    rows = ",\n".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in f6)
    main = f"""
#include <stdio.h>
#include "lenet_digits.h"
void lenet_output_layer(const int32_t in[LENET_OUTPUT_WEIGHT_DIM1], int32_t out[LENET_OUTPUT_WEIGHT_DIM0]);
static const int32_t f6[{len(f6)}][LENET_OUTPUT_WEIGHT_DIM1] = {{{rows}}};
int main(void) {{
    for (int n = 0; n < {len(f6)}; n++) {{
        int32_t out[LENET_OUTPUT_WEIGHT_DIM0];
        lenet_output_layer(f6[n], out);
        for (int o = 0; o < LENET_OUTPUT_WEIGHT_DIM0; o++) printf("%ld ", (long)out[o]);
        printf("\\n");
    }}
    return 0;
}}
"""
    (exported / "example.c").write_text(BLOCKS["c"])
    (exported / "main.c").write_text(main)
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
    r = run([gcc, *flags, "example.c", "main.c", "-o", "example"], exported)
    assert r.returncode == 0, r.stderr
    r = run([str(exported / "example")], exported)
    got = np.array([[int(v) for v in line.split()] for line in r.stdout.splitlines()])
    np.testing.assert_array_equal(got, expected)


def test_onnx_example_keeps_the_accuracy(exported):
    r = run([sys.executable, "-c", BLOCKS["onnx"]], exported)
    assert r.returncode == 0, r.stderr
    accuracy = float(re.search(r"accuracy ([0-9.]+)", r.stdout).group(1))
    float_accuracy = json.loads((ROOT / "fixtures" / "lenet_digits.json").read_text())["float_test_accuracy"]
    assert abs(accuracy - float_accuracy) <= 0.01


def test_verilog_example_reads_the_codes(exported, qmodel):
    iverilog, vvp = require_tool("iverilog"), require_tool("vvp")
    tb = """
module tb;
  reg clk = 0; reg [7:0] addr; wire [7:0] q; integer i;
  c1_weight_rom rom(.clk(clk), .addr(addr), .q(q));
  initial begin
    for (i = 0; i < 150; i = i + 1) begin
      addr = i; #1 clk = 1; #1 clk = 0; $display("%0d", q);
    end
    $finish;
  end
endmodule
"""
    (exported / "rom.v").write_text(BLOCKS["verilog"])
    (exported / "tb.v").write_text(tb)
    r = run([iverilog, "-o", "sim", "rom.v", "tb.v"], exported)
    assert r.returncode == 0, r.stderr
    r = run([vvp, "-n", "sim"], exported)
    words = [int(line) for line in r.stdout.split() if line.isdigit()]
    np.testing.assert_array_equal(words, qmodel.tensor("c1.weight").data.ravel())
