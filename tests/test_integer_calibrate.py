"""The float network a plan stands for (qexport.integer.network) and calibration of every node's
range (qexport.integer.calibrate), against independent references: the test's own torch module
carrying the dequantized weights (tests/onnx_support.onnx_reference, a transcription of README
"Numerics") evaluated in float64, and node outputs captured with torch forward hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import LENET, digits_test_split, make_state
from onnx_support import onnx_qmodel, onnx_reference
from qexport.errors import UsageError
from qexport.graph.execute import run_graph
from qexport.integer.calibrate import calibrate, normalised
from qexport.integer.network import planned_network

CASES = [("lenet", {}, {"bits": 8}), ("lenet", {}, {"plan": "seed"}),
         ("mobilenet_v1", {"num_classes": 10}, {"plan": "seed"}),  # affine per-channel, BN folded
         ("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}, {"plan": "seed"}),  # BN + sign thresholds
         ("twn_nin_gc", {}, {"plan": "seed"}), ("resnet18_bnn", {"num_classes": 10}, {"bits": 1})]  # fmt: skip


def _digits(n):
    x, y = digits_test_split()
    return x[:n, None], y[:n]


@pytest.mark.parametrize("arch,config,plan", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_planned_network_is_the_dequantized_module(arch, config, plan, tmp_path):
    path = LENET if arch == "lenet" else tmp_path / "m.pth"
    if arch != "lenet":
        torch.save(make_state(arch, config), path)
    qm = onnx_qmodel(path, **plan)
    graph, state = planned_network(qm.quantized)
    if arch == "lenet":
        x = normalised(_digits(4)[0], 0.0, 1.0)
    else:  # inputs with margin: a Sign here must not sit on a float rounding
        x = np.random.default_rng(1).integers(0, 256, (2, *graph.input_shape)).astype(np.float64) / 255.0
    got = run_graph(graph, state, x)[graph.output]
    ref = onnx_reference(qm).double().eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    if plan.get("plan") == "seed" and arch == "mobilenet_v1":
        assert "batch_norm" not in graph.ops  # every BN folded into its conv


def _hooked_ranges(module, x):
    """min/max of every leaf module's output (float64), captured by forward hooks."""
    seen = {}

    def hook(mod, args, out, name=None):
        seen[name] = (float(out.min()), float(out.max()))

    handles = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n))
               for n, m in module.named_modules() if n and not list(m.children())]  # fmt: skip
    with torch.no_grad():
        module(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return seen


def test_calibration_ranges_are_the_module_outputs_ranges():
    qm = onnx_qmodel(LENET, bits=8)
    images, _ = _digits(70)  # more than one batch
    cal = calibrate(qm.quantized, images, mean=(0.1307,), std=(0.3081,), progress=False)
    ref = onnx_reference(qm).double().eval()
    x = normalised(images, 0.1307, 0.3081)
    want = _hooked_ranges(ref, x)
    assert cal.samples == 70 and cal.ranges["input"] == (float(x.min()), float(x.max()))
    for name in ("c1", "s2", "c3", "s4", "c5", "f6", "output"):
        np.testing.assert_allclose(cal.ranges[name], want[name], rtol=1e-12, atol=1e-12)
    again = calibrate(qm.quantized, images, mean=(0.1307,), std=(0.3081,), progress=False)
    assert dict(again.ranges) == dict(cal.ranges)  # deterministic, exactly


def test_percentile_ranges_and_bad_values():
    qm = onnx_qmodel(LENET, bits=8)
    images, _ = _digits(40)
    cal = calibrate(qm.quantized, images, percentile=99.0, progress=False)
    full = calibrate(qm.quantized, images, progress=False)
    ref = onnx_reference(qm).double().eval()
    with torch.no_grad():
        c1 = ref.c1(torch.from_numpy(normalised(images, 0.0, 1.0))).numpy().ravel()
    np.testing.assert_allclose(cal.ranges["c1"], (np.percentile(c1, 1.0), np.percentile(c1, 99.0)), rtol=1e-12)
    assert full.ranges["c1"][0] <= cal.ranges["c1"][0] < cal.ranges["c1"][1] <= full.ranges["c1"][1]
    with pytest.raises(UsageError, match="percentile"):
        calibrate(qm.quantized, images, percentile=30.0)
    with pytest.raises(UsageError, match=r"\(1, 8, 8\), the network takes \(1, 28, 28\)"):
        calibrate(qm.quantized, np.zeros((2, 1, 8, 8), np.uint8))
