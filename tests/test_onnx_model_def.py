"""`qexport onnx --model-def FILE.py:NAME`: the ONNX graph is the user's own module (a Sigmoid LeNet
with the documented `c1 c3 c5 f6 output` keys stays a Sigmoid network), checked by onnxruntime
against that module's own forward in float64 on real digits; without --model-def the assumed
seed-002 ReLU LeNet is exported (README "The network graph")."""

from __future__ import annotations

import textwrap

import numpy as np
import onnx
import pytest

from conftest import digits_test_split, import_file, run_cli
from onnx_support import onnx_close, onnx_initializers, onnx_run

NET = textwrap.dedent('''
    import torch
    from torch import nn

    class SigLeNet(nn.Module):
        """The common tutorial LeNet-5: Sigmoid after c1 and c3 (not seed 002's ReLU)."""
        def __init__(self, classes=10):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5, padding=2)
            self.s2 = nn.AvgPool2d(2)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.s4 = nn.AvgPool2d(2)
            self.c5 = nn.Conv2d(16, 120, 5)
            self.f6 = nn.Linear(120, 84)
            self.output = nn.Linear(84, classes)

        def forward(self, x):
            x = self.s2(torch.sigmoid(self.c1(x)))
            x = self.s4(torch.sigmoid(self.c3(x)))
            return self.output(self.f6(torch.flatten(self.c5(x), 1)))
''')


@pytest.fixture(scope="module")
def sig_lenet(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("siglenet")
    (folder / "net.py").write_text(NET)
    mod = import_file(folder / "net.py", "test_siglenet_net")
    torch.manual_seed(7)
    net = mod.SigLeNet().eval()
    torch.save(net.state_dict(), folder / "sig_lenet.pth")
    return folder, net


def _digits(n=64):
    x, _ = digits_test_split()
    return (x[:n].astype(np.float32) / 255.0)[:, None]  # real handwritten digits, N x 1 x 28 x 28


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_float_onnx_is_the_users_sigmoid_network(sig_lenet, tmp_path):
    import torch

    folder, net = sig_lenet
    out = tmp_path / "sig.onnx"
    r = run_cli("onnx", folder / "sig_lenet.pth", "--model-def", f"{folder / 'net.py'}:SigLeNet", "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("--model-def runs code from") == 1  # said once
    ops = _ops(out)
    assert "Sigmoid" in ops and "Relu" not in ops
    x = _digits()
    with torch.no_grad():
        ref = net.double()(torch.from_numpy(x.astype(np.float64))).numpy()  # the module's own forward, float64
    got = onnx_run(out, x)
    ok, err, tol = onnx_close(got, ref)
    assert ok, (err, tol)
    margin = np.sort(ref, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 1e-3
    assert clear.sum() > len(x) // 2 and np.array_equal(got.argmax(1)[clear], ref.argmax(1)[clear])
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["qexport.options"] == "--model-def net.py:SigLeNet"  # the base name, never a path


def test_without_model_def_the_assumed_relu_lenet_is_exported(sig_lenet, tmp_path):
    folder, _ = sig_lenet
    out = tmp_path / "assumed.onnx"
    r = run_cli("onnx", folder / "sig_lenet.pth", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "assumed seed 002's LeNet" in r.stderr and "ReLU after c1 and c3" in r.stderr  # said, not silent
    ops = _ops(out)
    assert "Relu" in ops and "Sigmoid" not in ops


def test_quantized_onnx_with_model_def_computes_the_dequantized_user_network(sig_lenet, tmp_path):
    """--plan seed (affine uint8, int32 biases): onnxruntime equals the user's module, in float64,
    carrying the weights the ONNX file holds, dequantized here by numpy: scale * (q - zero_point)."""
    import copy

    import torch

    folder, net = sig_lenet
    out = tmp_path / "sig_q.onnx"
    r = run_cli("onnx", folder / "sig_lenet.pth", "--plan", "seed", "--model-def", f"{folder / 'net.py'}:SigLeNet",
                "-o", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    init = onnx_initializers(onnx.load(str(out)))
    ref_net = copy.deepcopy(net).double()
    state = ref_net.state_dict()
    quantized = [k for k in state if f"{k}_quantized" in init]
    assert {"c1.weight", "c3.weight", "c5.weight", "f6.weight", "output.weight"} <= set(quantized)
    for key in quantized:
        q = init[f"{key}_quantized"].astype(np.float64)
        zp = init[f"{key}_zero_point"].astype(np.float64)
        scale = init[f"{key}_scale"].astype(np.float64)
        if scale.ndim:  # per channel on axis 0
            zp, scale = (v.reshape((-1,) + (1,) * (q.ndim - 1)) for v in (zp, scale))
        state[key] = torch.from_numpy((q - zp) * scale)
    ref_net.load_state_dict(state)
    x = _digits()
    with torch.no_grad():
        ref = ref_net(torch.from_numpy(x.astype(np.float64))).numpy()
    ok, err, tol = onnx_close(onnx_run(out, x), ref)
    assert ok, (err, tol)
    assert "Sigmoid" in _ops(out)


def test_model_def_that_does_not_fit_the_checkpoint_is_one_line(sig_lenet, tmp_path):
    folder, _ = sig_lenet
    (tmp_path / "other.py").write_text(NET.replace("nn.Linear(84, classes)", "nn.Linear(84, 12)"))
    out = tmp_path / "x.onnx"
    r = run_cli("onnx", folder / "sig_lenet.pth", "--model-def", f"{tmp_path / 'other.py'}:SigLeNet", "-o", out)
    assert r.returncode == 1 and not out.exists()
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "output.weight" in errors[0] and "Traceback" not in r.stderr, r.stderr
