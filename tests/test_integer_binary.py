"""The integer graph of binarized and ternary networks (VGG, ResNet18 BNN, TWN), node by node.

Sign networks amplify any difference (one flipped sign changes a whole receptive field), so the
whole-network comparison of tests/test_integer_graph.py says little here.  Instead every integer
node is checked locally: the float ops it stands for (qexport.graph.execute, itself checked
against each module's torch forward) run in float64 on the node's own integer input, dequantized
exactly; a sign node must give the same signs (BN >= 0 -> +1, ties at exactly 0 excepted), a
requantizing node the same codes within one step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import make_state
from onnx_support import onnx_qmodel
from qexport.graph.execute import run_graph
from qexport.integer.calibrate import calibrate
from qexport.integer.lower import lower
from qexport.integer.network import planned_network
from qexport.integer.run import run_integer
from qexport.integer.weighted import SIGN

CASES = [("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}, {"plan": "seed"}),
         ("resnet18_bnn", {"num_classes": 10, "widths": (8, 8, 16, 16)}, {"bits": 1, "only": ("*",)}),
         ("twn_nin_gc", {"cfg": (16, 16, 16, 32, 32, 32, 64, 64)}, {"bits": 2, "only": ("*",)})]  # fmt: skip


def _float_of(graph, state, node_names, inputs: dict):
    """Run the float nodes `node_names` on given input values (node name -> array)."""
    nodes = [graph.node(n) for n in node_names]
    first = nodes[0]
    renamed = [replace(first, inputs=tuple("input" if i == first.inputs[0] else f"__{i}" for i in first.inputs))]
    renamed += nodes[1:]
    sub = replace(graph, nodes=tuple(renamed), output=nodes[-1].name)
    values = run_graph(sub, state, inputs[first.inputs[0]]) if len(first.inputs) == 1 else None
    return values


@pytest.mark.parametrize("arch,config,plan", CASES, ids=[c[0] for c in CASES])
def test_every_integer_node_computes_its_float_ops(arch, config, plan, tmp_path):
    torch.save(make_state(arch, config), tmp_path / "m.pth")
    qm = onnx_qmodel(tmp_path / "m.pth", **plan).quantized
    x = np.random.default_rng(4).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8)
    cal = calibrate(qm, x, progress=False)  # mean 0, std 1: the input zero point is exact
    ig = lower(qm, cal)
    codes = run_integer(ig, x)
    graph, state = planned_network(qm)
    real = {"input": ig.input.real(x)}
    where = {"input": "input"}
    for node in ig.nodes:
        real[node.name] = node.out.real(codes[node.name])
        for s in node.source or (node.name,):
            where[s] = node.name
    ops = {n.op for n in ig.nodes}
    signs = 0
    for node in ig.nodes:
        covers = list(node.source or (node.name,))
        first = graph.node(covers[0])
        if len(first.inputs) != 1:  # add: checked through the nodes after it
            continue
        given = {first.inputs[0]: real[where[first.inputs[0]]]}
        values = _float_of(graph, state, covers, given)
        want = values[covers[-1]]
        if node.out is SIGN:
            signs += 1
            bn_value = values[next(c for c in covers if graph.node(c).op == "batch_norm")] if any(
                graph.node(c).op == "batch_norm" for c in covers) else want  # fmt: skip
            got = real[node.name]
            if graph.node(covers[-1]).op in ("sign", "hardtanh") or node.op in ("conv2d", "linear", "threshold"):
                expected = np.where(np.sign(want) >= 0, 1.0, -1.0) if node.op != "table" else np.sign(want)
                if node.op != "table" and "pool_kernel" not in node.attrs:
                    expected = np.where(bn_value >= 0, 1.0, -1.0)
                tie = np.abs(bn_value) < 1e-9 if bn_value.shape == got.shape else np.zeros(got.shape, bool)
                assert np.array_equal(got[~tie], expected[~tie]), node.name
        else:
            q = np.clip(np.round(want / node.out.scale) + node.out.zero_point, 0, 255)
            # one code of rounding, plus the contract's bias rounding to one accumulator step
            # (b_q = round(b / (S_x S_w)): half a step, i.e. m / 2^(s+1) output codes)
            tol = 1.0
            if "b_q" in node.arrays:
                tol += float(np.max(node.arrays["m"] / 2.0 ** (node.arrays["s"].astype(np.float64) + 1)))
            assert np.abs(q - codes[node.name]).max() <= tol, (node.name, tol)
    assert signs > 0 and ("threshold" in ops or arch != "resnet18_bnn")
