"""`qexport golden --activations gain|uint8` (README "Golden vectors"): gain is the LeNet pass of
before the option, byte for byte (the sha256 of tests/data/output_sha256.json, recorded by the code
before it); uint8 is the calibrated integer graph and needs --calibrate; the contradictions are
usage errors (exit 2) that name the fix and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import output_record as rec
from conftest import LENET, make_state
from qexport.golden import golden
from test_graph_end_to_end import in_process, one_error

RECORD = json.loads(rec.RECORD.read_text())
DIGITS = LENET.parent / "digits_test.npz"


@pytest.mark.parametrize("fmt", ["npy", "mem", "cheader"])
def test_gain_is_the_recorded_lenet_pass(fmt, tmp_path):
    out = tmp_path / "g"
    golden(LENET, (), out, fmt, samples=3, activations="gain")  # as output_record.run_golden, plus the option
    assert rec.summary(rec.digest(out)) == RECORD[f"golden/lenet/default/{fmt}"]


def usage_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


def test_through_the_cli(tmp_path):
    base = ["golden", str(LENET), "-n", "4"]
    r = in_process(*base, "--activations", "uint8", "-o", tmp_path / "a")
    usage_error(r, "--activations uint8", "give --calibrate DATA")
    r = in_process(*base, "--activations", "gain", "--calibrate", DIGITS, "-o", tmp_path / "b")
    usage_error(r, "--activations gain", "drop --calibrate")
    r = in_process(*base, "--activations", "int8", "-o", tmp_path / "c")
    usage_error(r, "int8")
    assert not any(tmp_path.iterdir())  # nothing written
    runs = {"gain": ["--activations", "gain"], "default": [], "uint8": ["--activations", "uint8", "--calibrate", DIGITS],
            "calibrated": ["--calibrate", DIGITS]}  # fmt: skip
    for name, extra in runs.items():
        r = in_process(*base, *extra, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
    digest = {name: rec.digest(tmp_path / name) for name in runs}
    assert digest["gain"] == digest["default"] and digest["uint8"] == digest["calibrated"]
    assert "c1.npy" in digest["gain"] and "c1.npy" in digest["uint8"] and digest["gain"] != digest["uint8"]


def test_gain_on_a_network_that_is_not_lenet_is_refused(tmp_path):
    ckpt = tmp_path / "vgg.pth"
    torch.save(make_state("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}), ckpt)
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((1, 3, 32, 32), np.uint8))
    r = in_process("golden", ckpt, "-i", images, "--activations", "gain", "-o", tmp_path / "out")
    one_error(r, "vgg.pth", "--activations gain", "--calibrate DATA")
    assert not (tmp_path / "out").exists()
