"""Mixed plans: `--layer-bits GLOB=N` (README "Plans").

The expected plans are written out by hand from the rule: matching layers get N bits (1 binary,
2 ternary, 3..16 affine), every other layer keeps what --bits / --plan / --only gave it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import LENET, run_cli
from qexport.prepare import plan_options_from
from qexport.quantize.plan import make_plan
from qexport.readers import read_model

TWN_SMALL = {"cfg": (16, 16, 16, 32, 32, 32, 64, 64), "num_classes": 10}
TWN_TERNARY = ["tnn_bin.2.tnn_bin_conv", "tnn_bin.3.tnn_bin_conv", "tnn_bin.5.tnn_bin_conv",
               "tnn_bin.6.tnn_bin_conv", "tnn_bin.7.tnn_bin_conv", "tnn_bin.9.tnn_bin_conv",
               "tnn_bin.10.tnn_bin_conv"]  # fmt: skip


def schemes(path, **kw):
    plan = make_plan(read_model(path), plan_options_from(**kw))
    return {lp.layer: (lp.scheme, lp.bits) for lp in plan.layers}


def test_seed_plan_with_8_bit_ends(checkpoint):
    path = checkpoint("twn_nin_gc", config=TWN_SMALL)
    got = schemes(path, plan="seed", layer_bits={"tnn_bin.0": 8, "tnn_bin.11": 8})
    want = {"tnn_bin.0": ("affine", 8), **{n: ("ternary", 2) for n in TWN_TERNARY}, "tnn_bin.11": ("affine", 8)}
    assert got == want
    assert list(got) == list(want)  # network order, not option order


def test_layer_bits_alone_and_over_bits():
    assert schemes(LENET, layer_bits={"*": 4}) == {n: ("affine", 4) for n in ("c1", "c3", "c5", "f6", "output")}
    got = schemes(LENET, bits=8, layer_bits={"c1": 1, "f*": 2})
    assert got == {"c1": ("binary", 1), "c3": ("affine", 8), "c5": ("affine", 8), "f6": ("ternary", 2),
                   "output": ("affine", 8)}  # fmt: skip
    # --only restricts --bits; --layer-bits adds its layers on top
    assert schemes(LENET, bits=8, only=("c3",), layer_bits={"output": 6}) == {"c3": ("affine", 8),
                                                                           "output": ("affine", 6)}


@pytest.mark.parametrize("args, message", [
    (["--layer-bits", "nope*=8"], "--layer-bits nope*=8 matches no conv/linear layer"),
    (["--layer-bits", "c1=8", "--keep-float", "c*"], "--layer-bits c1=8 and --keep-float both match layer c1"),
    (["--layer-bits", "c*=8", "--layer-bits", "c1=4"], "layer c1 matches two globs with different bits"),
    (["--layer-bits", "c1=0"], "expected GLOB=N with N in 1..16"),
    (["--layer-bits", "c1"], "expected GLOB=N with N in 1..16"),
    (["--layer-bits", "c1=8", "--layer-bits", "c1=4"], "'c1' is given two different bit widths"),
    (["--layer-bits", "c1=2", "--zero-point", "truncate"], "--zero-point truncate applies to affine plans"),
])  # fmt: skip
def test_refusals_are_usage_errors(tmp_path, args, message):
    out = tmp_path / "x.h"
    r = run_cli("cheader", LENET, "-o", out, *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_recorded_in_provenance_and_same_arrays_as_the_equivalent_plan(tmp_path):
    """`--layer-bits '*=8'` on LeNet is the plan `--bits 8`: the same arrays, and the manifest
    records the option that was given."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("npy", LENET, "-o", a, "--layer-bits", "*=8").returncode == 0
    assert run_cli("npy", LENET, "-o", b, "--bits", "8").returncode == 0
    names = sorted(p.name for p in a.glob("*.npy"))
    assert names == sorted(p.name for p in b.glob("*.npy")) and len(names) == 10
    for name in names:
        x, y = np.load(a / name), np.load(b / name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert json.loads((a / "manifest.json").read_text())["provenance"]["options"] == "--layer-bits *=8"


def test_mixed_plan_lowers_to_an_integer_graph(checkpoint, tmp_path):
    """The point of mixed plans: TWN's seed plan (ternary blocks) with 8-bit first and last convs
    has an integer graph; the seed plan alone keeps tnn_bin.0 float and is refused, naming it."""
    path = checkpoint("twn_nin_gc", config=TWN_SMALL)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, images=rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8), labels=rng.integers(0, 10, 8))
    r = run_cli("eval", path, "--data", data, "--plan", "seed", "--layer-bits", "tnn_bin.0=8",
                "--layer-bits", "tnn_bin.11=8")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "integer graph:" in r.stdout and "tnn_bin.10.tnn_bin_conv" in r.stdout
    r = run_cli("eval", path, "--data", data, "--plan", "seed")
    assert r.returncode == 1 and "tnn_bin.0" in r.stderr and "Traceback" not in r.stderr
