"""The network graph (issue 14 foundation): modules written here, traced into a Graph; the exact op
sequence / inputs / shapes each module defines (written by hand), and an independent check: a small
numpy float64 interpreter of the Graph, fed with the module's state_dict, gives the module's own
float64 forward within 1e-9 on random inputs (also for the five documented architectures)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_state
from qexport.errors import GraphError, QexportError
from qexport.graph import SUPPORTED_OPS, Graph, graph_text, trace_module
from qexport.graph.documented import ASSUMPTIONS, graph_for_documented

# ---------------------------------------------------------------- the numpy interpreter (float64)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def np_conv2d(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, ho, wo, kh, kw))
    for i in range(kh):  # explicit loops over the kernel window
        for j in range(kw):
            cols[..., i, j] = x[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
    cols = cols.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", cols, wg, optimize=True).reshape(n, o, ho, wo)
    return out if b is None else out + b[None, :, None, None]


def np_pool(x, kernel, stride, padding, reduce, pad_value):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    win = np.stack([x[:, :, i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw]
                    for i in range(kh) for j in range(kw)], axis=-1)  # fmt: skip
    return reduce(win, axis=-1)


def np_adaptive_avg(x, out_hw):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def _per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def run_graph(graph: Graph, state: dict, x: np.ndarray) -> np.ndarray:
    """Evaluate `graph` in float64 numpy, with the tensors of `state` (name -> array)."""
    env = {"input": np.asarray(x, dtype=np.float64)}
    p = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    for node in graph.nodes:
        a, ins = node.attrs, [env[i] for i in node.inputs]
        t = ins[0]
        prm = {role: p[key] for role, key in node.params.items()}
        op = node.op
        if op in ("conv2d", "binary_conv2d", "linear", "binary_linear"):
            w = np.sign(prm["weight"]) if op.startswith("binary_") else prm["weight"]
            t = np.sign(t) if a["binarize_input"] else t
            if op.endswith("conv2d"):
                y = np_conv2d(t, w, prm.get("bias"), a["stride"], a["padding"], a["dilation"], a["groups"])
            else:
                y = t @ w.T + (prm["bias"] if "bias" in prm else 0.0)
        elif op == "batch_norm":
            y = (t - _per_channel(prm["running_mean"], t.ndim)) / np.sqrt(_per_channel(prm["running_var"], t.ndim) + a["eps"])
            if a["affine"]:
                y = y * _per_channel(prm["weight"], t.ndim) + _per_channel(prm["bias"], t.ndim)
        elif op == "relu":
            y = np.maximum(t, 0.0)
        elif op == "relu6":
            y = np.clip(t, 0.0, 6.0)
        elif op == "hardtanh":
            y = np.clip(t, a["min_val"], a["max_val"])
        elif op == "leaky_relu":
            y = np.where(t > 0, t, a["negative_slope"] * t)
        elif op == "prelu":
            slope = prm["weight"] if prm["weight"].size == 1 else _per_channel(prm["weight"], t.ndim)
            y = np.where(t > 0, t, slope * t)
        elif op == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-t))
        elif op == "tanh":
            y = np.tanh(t)
        elif op == "sign":
            y = np.sign(t)
        elif op == "max_pool2d":
            assert not a["ceil_mode"] and a["dilation"] == (1, 1)
            y = np_pool(t, a["kernel"], a["stride"], a["padding"], np.max, -np.inf)
        elif op == "avg_pool2d":
            assert not a["ceil_mode"] and (a["count_include_pad"] or a["padding"] == (0, 0))
            y = np_pool(t, a["kernel"], a["stride"], a["padding"], np.mean, 0.0)
        elif op == "adaptive_avg_pool2d":
            y = np_adaptive_avg(t, a["output_size"])
        elif op == "flatten":
            s, e = a["start_dim"], a["end_dim"]
            y = t.reshape(t.shape[:s] + (-1,) + t.shape[e + 1:])
        elif op == "reshape":
            y = t.reshape((t.shape[0],) + tuple(a["shape"]))
        elif op == "add":
            y = ins[0] + ins[1]
        elif op == "cat":
            y = np.concatenate(ins, axis=a["dim"])
        elif op == "channel_shuffle":
            n, c, h, w = t.shape
            g = a["groups"]
            y = t.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
        elif op in ("softmax", "log_softmax"):
            z = t - t.max(axis=a["dim"], keepdims=True)
            lse = np.log(np.exp(z).sum(axis=a["dim"], keepdims=True))
            y = z - lse if op == "log_softmax" else np.exp(z - lse)
        else:
            raise AssertionError(f"interpreter has no op {op}")
        assert y.shape[1:] == node.output_shape, (node.name, y.shape, node.output_shape)
        env[node.name] = y
    return env[graph.output]


def check_numerics(module: nn.Module, graph: Graph, seed: int = 0, batch: int = 2):
    """The interpreter on the module's state_dict == module.double() forward, within 1e-9."""
    module = module.double().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *graph.input_shape), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        expected = module(x.clone()).numpy()
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    got = run_graph(graph, state, x.numpy())
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # qexport's own executor (qexport.graph.execute) against the same torch forward, every node shaped
    from qexport.graph.execute import run_graph as qexport_run

    values = qexport_run(graph, state, x.numpy())
    for node in graph.nodes:
        assert values[node.name].shape[1:] == node.output_shape, (node.name, values[node.name].shape)
    np.testing.assert_allclose(values[graph.output], expected, rtol=0, atol=1e-9)
    return got


def randomise_bn(module: nn.Module, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.weight.shape, generator=gen) * 0.5 + 1)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
        if isinstance(m, nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return module


def summary(graph: Graph):
    return [(n.name, n.op, n.inputs, n.output_shape) for n in graph.nodes]


# ---------------------------------------------------------------- modules written for these tests


class SigmoidLeNet(nn.Module):
    """The original LeNet-5 shape with sigmoid, under the documented lenet keys."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.act = nn.Sigmoid()
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(self.act(self.c1(x)), 2)
        x = F.avg_pool2d(torch.sigmoid(self.c3(x)), kernel_size=2, stride=2)
        x = torch.flatten(self.c5(x), 1)
        return self.output(self.f6(x))


def test_sigmoid_lenet_graph_and_numerics():
    torch.manual_seed(0)
    m = SigmoidLeNet().eval()
    g = trace_module(m, (1, 28, 28), origin="test")
    assert summary(g) == [
        ("c1", "conv2d", ("input",), (6, 28, 28)),
        ("act", "sigmoid", ("c1",), (6, 28, 28)),
        ("avg_pool2d", "avg_pool2d", ("act",), (6, 14, 14)),
        ("c3", "conv2d", ("avg_pool2d",), (16, 10, 10)),
        ("sigmoid", "sigmoid", ("c3",), (16, 10, 10)),
        ("avg_pool2d_1", "avg_pool2d", ("sigmoid",), (16, 5, 5)),
        ("c5", "conv2d", ("avg_pool2d_1",), (120, 1, 1)),
        ("flatten", "flatten", ("c5",), (120,)),
        ("f6", "linear", ("flatten",), (84,)),
        ("output", "linear", ("f6",), (10,)),
    ]
    assert g.output == "output"
    c1 = g.node("c1")
    assert dict(c1.params) == {"weight": "c1.weight", "bias": "c1.bias"}
    assert dict(c1.attrs) == {"stride": (1, 1), "padding": (2, 2), "dilation": (1, 1), "groups": 1, "binarize_input": False}
    assert dict(g.node("avg_pool2d").attrs) == {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0),
                                                "ceil_mode": False, "count_include_pad": True}  # fmt: skip
    assert "test_graph_trace.py:" in g.node("sigmoid").source
    # the documented key layout: the same state_dict keys and shapes as qexport's lenet
    documented = make_state("lenet", {})
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {k: tuple(v.shape) for k, v in documented.items()}
    check_numerics(m, g)


class OtherLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())  # fmt: skip
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(8 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10, bias=False)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(self.drop(x))))


def test_lenet_with_other_names_drops_dropout():
    m = OtherLeNet().eval()
    g = trace_module(m, (1, 30, 30))
    assert summary(g) == [
        ("features.0", "conv2d", ("input",), (4, 28, 28)),
        ("features.1", "relu", ("features.0",), (4, 28, 28)),
        ("features.2", "max_pool2d", ("features.1",), (4, 14, 14)),
        ("features.3", "conv2d", ("features.2",), (8, 7, 7)),
        ("features.4", "relu", ("features.3",), (8, 7, 7)),
        ("view", "reshape", ("features.4",), (392,)),
        ("fc1", "linear", ("view",), (32,)),
        ("relu", "relu", ("fc1",), (32,)),
        ("fc2", "linear", ("relu",), (10,)),
    ]
    assert g.node("features.3").attrs["stride"] == (2, 2) and g.node("features.3").attrs["padding"] == (1, 1)
    assert dict(g.node("fc2").params) == {"weight": "fc2.weight"}
    assert any("dropped Dropout drop" in n for n in g.notes)
    check_numerics(m, g)


def shuffle(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class NIN(nn.Module):
    def __init__(self, groups: int = 1):
        super().__init__()
        self.groups = groups
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 1, groups=groups)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv3 = nn.Conv2d(32, 10, 1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.groups > 1:
            x = shuffle(x, self.groups)
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.adaptive_avg_pool2d(self.conv3(x), 1)
        return x.flatten(1)


@pytest.mark.parametrize("groups", [1, 2])  # 2 groups of 8 channels: groups != channels per group
def test_nin_with_and_without_groups(groups):
    m = randomise_bn(NIN(groups)).eval()
    g = trace_module(m, (3, 8, 8))
    head = [("conv1", "conv2d", ("input",), (16, 8, 8)), ("bn1", "batch_norm", ("conv1",), (16, 8, 8)),
            ("relu", "relu", ("bn1",), (16, 8, 8))]  # fmt: skip
    mid = [("channel_shuffle", "channel_shuffle", ("relu",), (16, 8, 8))] if groups > 1 else []
    tail = [("conv2", "conv2d", (mid[0][0] if mid else "relu",), (32, 8, 8)), ("bn2", "batch_norm", ("conv2",), (32, 8, 8)),
            ("relu_1", "relu", ("bn2",), (32, 8, 8)), ("pool", "max_pool2d", ("relu_1",), (32, 4, 4)),
            ("conv3", "conv2d", ("pool",), (10, 4, 4)), ("adaptive_avg_pool2d", "adaptive_avg_pool2d", ("conv3",), (10, 1, 1)),
            ("flatten", "flatten", ("adaptive_avg_pool2d",), (10,))]  # fmt: skip
    assert summary(g) == head + mid + tail
    assert g.node("conv2").attrs["groups"] == groups
    assert dict(g.node("bn1").params) == {"weight": "bn1.weight", "bias": "bn1.bias",
                                          "running_mean": "bn1.running_mean", "running_var": "bn1.running_var"}  # fmt: skip
    if groups > 1:
        assert g.node("channel_shuffle").attrs["groups"] == groups
    check_numerics(m, g)


class BinActive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sign()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad = grad.clone()
        grad[x.abs() > 1] = 0
        return grad


class BinarizeConv2d(nn.Conv2d):
    """BinaryNet's way: input binarized unless RGB; weights binarized from a float copy in .org."""

    def forward(self, x):
        if x.size(1) != 3:
            x = torch.sign(x)
        if not hasattr(self.weight, "org"):
            self.weight.org = self.weight.data.clone()
        self.weight.data = torch.sign(self.weight.org)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BinarizeLinear(nn.Linear):
    def forward(self, x):
        return F.linear(BinActive.apply(x), torch.sign(self.weight), self.bias)


class OpaqueSign(nn.Module):
    """fx cannot trace this (control flow on a size): identified by behaviour."""

    def forward(self, x):
        if x.size(1) > 0:
            return BinActive.apply(x)
        return x


class CNV(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = BinarizeConv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.Hardtanh(inplace=True)
        self.conv2 = BinarizeConv2d(8, 8, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn2 = nn.BatchNorm2d(8)
        self.act2 = OpaqueSign()
        self.fc = BinarizeLinear(8 * 4 * 4, 10)
        self.bn3 = nn.BatchNorm1d(10, affine=False)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = BinActive.apply(x)
        x = self.act2(self.bn2(self.pool(self.conv2(x))))
        return self.bn3(self.fc(x.reshape(x.shape[0], -1)))


def test_binarynet_cnv_opaque_leaves_identified_by_behaviour():
    torch.manual_seed(1)
    m = randomise_bn(CNV()).eval()
    g = trace_module(m, (3, 8, 8))
    assert [(n.name, n.op, n.output_shape) for n in g.nodes] == [
        ("conv1", "binary_conv2d", (8, 8, 8)),
        ("bn1", "batch_norm", (8, 8, 8)),
        ("act1", "hardtanh", (8, 8, 8)),
        ("bin_active_apply", "sign", (8, 8, 8)),
        ("conv2", "binary_conv2d", (8, 8, 8)),
        ("pool", "max_pool2d", (8, 4, 4)),
        ("bn2", "batch_norm", (8, 4, 4)),
        ("act2", "sign", (8, 4, 4)),
        ("reshape", "reshape", (128,)),
        ("fc", "binary_linear", (10,)),
        ("bn3", "batch_norm", (10,)),
    ]
    assert g.node("conv1").attrs["binarize_input"] is False  # the RGB image is not binarized
    assert g.node("conv2").attrs["binarize_input"] is True
    assert g.node("fc").attrs["binarize_input"] is True
    assert dict(g.node("conv2").params) == {"weight": "conv2.weight"}
    assert dict(g.node("bn3").params) == {"running_mean": "bn3.running_mean", "running_var": "bn3.running_var"}
    assert g.node("bn3").attrs["affine"] is False
    assert g.node("act2").inputs == ("bn2",)
    # tracing ran a copy: the user's module was not rewritten by BinarizeConv2d's forward
    assert not hasattr(m.conv1.weight, "org")
    check_numerics(m, g)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        identity = x if self.down is None else self.down(x)
        out += identity
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = Block(4, 4, 1)
        self.layer2 = Block(4, 8, 2)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(torch.add(self.stem(x), self.stem(x))))
        return self.fc(torch.flatten(self.gap(x), 1))


def test_residual_network_add():
    m = randomise_bn(ResNet()).eval()
    g = trace_module(m, (3, 8, 8))
    ops = [(n.name, n.op, n.inputs, n.output_shape) for n in g.nodes]
    assert ops == [
        ("stem", "conv2d", ("input",), (4, 8, 8)),
        ("stem_1", "conv2d", ("input",), (4, 8, 8)),
        ("add", "add", ("stem", "stem_1"), (4, 8, 8)),
        ("layer1.conv1", "conv2d", ("add",), (4, 8, 8)),
        ("layer1.bn1", "batch_norm", ("layer1.conv1",), (4, 8, 8)),
        ("layer1.relu", "relu", ("layer1.bn1",), (4, 8, 8)),
        ("layer1.conv2", "conv2d", ("layer1.relu",), (4, 8, 8)),
        ("layer1.bn2", "batch_norm", ("layer1.conv2",), (4, 8, 8)),
        ("layer1.add_1", "add", ("layer1.bn2", "add"), (4, 8, 8)),
        ("layer1.relu_1", "relu", ("layer1.add_1",), (4, 8, 8)),
        ("layer2.conv1", "conv2d", ("layer1.relu_1",), (8, 4, 4)),
        ("layer2.bn1", "batch_norm", ("layer2.conv1",), (8, 4, 4)),
        ("layer2.relu_2", "relu", ("layer2.bn1",), (8, 4, 4)),
        ("layer2.conv2", "conv2d", ("layer2.relu_2",), (8, 4, 4)),
        ("layer2.bn2", "batch_norm", ("layer2.conv2",), (8, 4, 4)),
        ("layer2.down.0", "conv2d", ("layer1.relu_1",), (8, 4, 4)),
        ("layer2.down.1", "batch_norm", ("layer2.down.0",), (8, 4, 4)),
        ("layer2.add_2", "add", ("layer2.bn2", "layer2.down.1"), (8, 4, 4)),
        ("layer2.relu_3", "relu", ("layer2.add_2",), (8, 4, 4)),
        ("gap", "adaptive_avg_pool2d", ("layer2.relu_3",), (8, 1, 1)),
        ("flatten", "flatten", ("gap",), (8,)),
        ("fc", "linear", ("flatten",), (5,)),
    ]
    assert g.node("stem_1").params == g.node("stem").params  # a module called twice: the same tensors
    check_numerics(m, g)


class InvertedResidual(nn.Module):
    def __init__(self, c=4, expand=3):
        super().__init__()
        h = c * expand
        self.expand = nn.Conv2d(c, h, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(h)
        self.act = nn.ReLU6(inplace=True)
        self.dw = nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False)
        self.bn2 = nn.BatchNorm2d(h)
        self.project = nn.Conv2d(h, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.head = nn.Sequential(nn.LeakyReLU(0.1), nn.PReLU(c), nn.Tanh(), nn.Identity())
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(c * 3 * 3, 6)

    def forward(self, x):
        y = self.act(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        y = x + self.bn3(self.project(y))
        y = self.pool(self.head(y))
        y = F.hardtanh(y.reshape(-1, 36), -0.5, 0.5)
        return F.softmax(F.leaky_relu(self.fc(y), negative_slope=0.2), dim=-1)


def test_inverted_residual_relu6_and_activation_zoo():
    m = randomise_bn(InvertedResidual()).eval()
    g = trace_module(m, (4, 5, 5))
    assert summary(g) == [
        ("expand", "conv2d", ("input",), (12, 5, 5)),
        ("bn1", "batch_norm", ("expand",), (12, 5, 5)),
        ("act", "relu6", ("bn1",), (12, 5, 5)),
        ("dw", "conv2d", ("act",), (12, 5, 5)),
        ("bn2", "batch_norm", ("dw",), (12, 5, 5)),
        ("relu6", "relu6", ("bn2",), (12, 5, 5)),
        ("project", "conv2d", ("relu6",), (4, 5, 5)),
        ("bn3", "batch_norm", ("project",), (4, 5, 5)),
        ("add", "add", ("input", "bn3"), (4, 5, 5)),
        ("head.0", "leaky_relu", ("add",), (4, 5, 5)),
        ("head.1", "prelu", ("head.0",), (4, 5, 5)),
        ("head.2", "tanh", ("head.1",), (4, 5, 5)),
        ("pool", "avg_pool2d", ("head.2",), (4, 3, 3)),
        ("reshape", "reshape", ("pool",), (36,)),
        ("hardtanh", "hardtanh", ("reshape",), (36,)),
        ("fc", "linear", ("hardtanh",), (6,)),
        ("leaky_relu", "leaky_relu", ("fc",), (6,)),
        ("softmax", "softmax", ("leaky_relu",), (6,)),
    ]
    assert g.node("dw").attrs["groups"] == 12
    assert g.node("head.0").attrs["negative_slope"] == pytest.approx(0.1)
    assert g.node("leaky_relu").attrs["negative_slope"] == pytest.approx(0.2)
    assert dict(g.node("hardtanh").attrs) == {"min_val": -0.5, "max_val": 0.5}
    assert g.node("softmax").attrs["dim"] == 1
    assert dict(g.node("head.1").params) == {"weight": "head.1.weight"}
    assert any("Identity head.3" in n for n in g.notes)
    check_numerics(m, g)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1)
        self.b = nn.Conv2d(2, 5, 3, padding=2, dilation=2)
        self.c = nn.Conv2d(8, 4, 3, stride=2)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = F.max_pool2d(y, 3, stride=1, padding=1)
        return torch.sigmoid(self.c(torch.tanh(y)))


def test_cat_functional_max_pool_and_tanh():
    m = Inception().eval()
    g = trace_module(m, (2, 7, 7))
    assert summary(g) == [
        ("a", "conv2d", ("input",), (3, 7, 7)),
        ("b", "conv2d", ("input",), (5, 7, 7)),
        ("cat", "cat", ("a", "b"), (8, 7, 7)),
        ("max_pool2d", "max_pool2d", ("cat",), (8, 7, 7)),
        ("tanh", "tanh", ("max_pool2d",), (8, 7, 7)),
        ("c", "conv2d", ("tanh",), (4, 3, 3)),
        ("sigmoid", "sigmoid", ("c",), (4, 3, 3)),
    ]
    assert g.node("cat").attrs["dim"] == 1
    assert dict(g.node("max_pool2d").attrs) == {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1),
                                                "dilation": (1, 1), "ceil_mode": False}  # fmt: skip
    assert g.node("b").attrs["dilation"] == (2, 2)
    check_numerics(m, g)


# ---------------------------------------------------------------- the five documented architectures

SMALL = {
    "lenet": {},
    "vgg_cifar10_binary": {"infl_ratio": 1, "classifier": "three", "hidden": 32},
    "twn_nin_gc": {"cfg": (16, 16, 16, 32, 32, 32, 64, 64)},
    "resnet18_bnn": {"num_classes": 10, "widths": (8, 8, 16, 16)},
    "mobilenet_v1": {"num_classes": 10},
}


@pytest.mark.parametrize("arch", list(SMALL))
def test_documented_architectures(arch):
    from qexport.models import build

    g = graph_for_documented(arch, SMALL[arch])
    assert g.assumption == ASSUMPTIONS[arch] and "--model-def" in g.assumption
    assert g.origin.startswith(f"documented {arch}")
    module = build(arch, SMALL[arch])
    module.load_state_dict(make_state(arch, SMALL[arch]))
    # every tensor the graph names is in the state_dict, and every weight of the module is used
    state = module.state_dict()
    assert set(g.param_names) <= set(state)
    assert {k for k in state if not k.endswith("num_batches_tracked")} == set(g.param_names)
    ops = g.ops
    if arch == "lenet":
        assert ops == ("conv2d", "relu", "avg_pool2d", "conv2d", "relu", "avg_pool2d", "conv2d", "flatten", "linear", "linear")
        assert [n.output_shape for n in g.nodes][-4:] == [(120, 1, 1), (120,), (84,), (10,)]
    elif arch == "vgg_cifar10_binary":
        convs = [n for n in g.nodes if n.op == "conv2d"]
        assert [n.attrs["binarize_input"] for n in convs] == [False, True, True, True, True, True]
        assert [n.attrs["binarize_input"] for n in g.nodes if n.op == "linear"] == [True, True, True]
        assert ops.count("hardtanh") == 8 and ops[-1] == "log_softmax" and g.nodes[-1].output_shape == (10,)
    elif arch == "twn_nin_gc":
        assert [n.attrs["groups"] for n in g.nodes if n.op == "channel_shuffle"] == [2, 2, 16, 4, 4, 32]
        assert ops.count("sign") == 1 and ops[-2:] == ("avg_pool2d", "reshape") and g.nodes[-1].output_shape == (10,)
    elif arch == "resnet18_bnn":
        assert ops.count("add") == 16 and ops.count("sign") == 16 and ops.count("prelu") == 16
        assert ops[-3:] == ("adaptive_avg_pool2d", "flatten", "linear")
    else:
        assert ops.count("relu6") == 27 and ops.count("conv2d") == 27
        assert ops[-4:] == ("adaptive_avg_pool2d", "flatten", "linear", "softmax")
        assert [n.attrs["groups"] for n in g.nodes if n.op == "conv2d"][1] == 32  # the first depthwise conv
    check_numerics(module, g)


# ---------------------------------------------------------------- refusals


class UsesExp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.exp(self.conv(x))  # EXP_LINE


class ScaledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class Weird(nn.Module):
    def forward(self, x):
        if x.size(1) > 0:
            return x * 2
        return x


class HasWeird(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = Weird()

    def forward(self, x):
        return self.w(x)


def _line_of(obj, marker: str) -> int:
    lines, start = inspect.getsourcelines(obj)
    return start + next(i for i, line in enumerate(lines) if marker in line)


def test_unsupported_function_names_node_op_line_and_supported_ops():
    with pytest.raises(GraphError) as info:
        trace_module(UsesExp(), (1, 6, 6), where="net.py:UsesExp")
    msg = str(info.value)
    assert isinstance(info.value, QexportError) and "\n" not in msg
    assert msg.startswith("net.py:UsesExp: node exp: op exp is not supported")
    assert f"test_graph_trace.py:{_line_of(UsesExp.forward, 'EXP_LINE')}" in msg
    assert "supported: " + ", ".join(SUPPORTED_OPS) in msg


def test_unidentified_conv_subclass_names_module_class_and_source():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(ScaledConv(1, 2, 3))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(GraphError) as info:
        trace_module(Net(), (1, 6, 6))
    msg = str(info.value)
    assert "body.0 (ScaledConv)" in msg
    assert f"class at test_graph_trace.py:{inspect.getsourcelines(ScaledConv)[1]}" in msg


def test_unidentified_opaque_module():
    with pytest.raises(GraphError) as info:
        trace_module(HasWeird(), (2, 3, 3))
    msg = str(info.value)
    assert "w (Weird)" in msg and f"test_graph_trace.py:{inspect.getsourcelines(Weird)[1]}" in msg
    assert "supported:" in msg


def test_graph_text_lists_every_node_and_origin():
    g = trace_module(SigmoidLeNet(), (1, 28, 28), origin="model-def lenet_sigmoid.py:SigmoidLeNet")
    text = graph_text(g)
    assert text.splitlines()[0] == "graph from:    model-def lenet_sigmoid.py:SigmoidLeNet"
    node_lines = [line for line in text.splitlines() if line.split(" ")[0] in {n.name for n in g.nodes}]
    assert len(node_lines) == len(g.nodes)
    assert any("c1" in line and "conv2d" in line and "(6, 28, 28)" in line and "weight=c1.weight" in line
               for line in node_lines)  # fmt: skip


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


def test_graph_is_frozen_and_checked_and_one_input_only():
    import dataclasses

    g = trace_module(Inception(), (2, 7, 7))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.output = "a"
    with pytest.raises(TypeError):
        g.node("c").attrs["stride"] = (2, 2)  # attrs and params are read-only mappings
    bad = dataclasses.replace(g, nodes=tuple(reversed(g.nodes)))
    with pytest.raises(ValueError, match="not defined before it"):
        bad.check()
    with pytest.raises(GraphError, match=r"takes 2 inputs \(x, y\); a graph has exactly one input"):
        trace_module(TwoInputs(), (3,))


class MeanPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        y = self.conv(x)
        z = torch.mean(y, dim=[-1, -2], keepdim=True).flatten(1)
        return self.fc(y.mean((2, 3))) + self.fc(z)


def test_mean_over_height_and_width_is_a_global_average_pool():
    m = MeanPool().eval()
    g = trace_module(m, (2, 6, 5))
    assert summary(g) == [
        ("conv", "conv2d", ("input",), (6, 4, 3)),
        ("mean", "adaptive_avg_pool2d", ("conv",), (6, 1, 1)),
        ("flatten", "flatten", ("mean",), (6,)),
        ("mean_1.pool", "adaptive_avg_pool2d", ("conv",), (6, 1, 1)),
        ("mean_1", "flatten", ("mean_1.pool",), (6,)),
        ("fc", "linear", ("mean_1",), (4,)),
        ("fc_1", "linear", ("flatten",), (4,)),
        ("add", "add", ("fc", "fc_1"), (4,)),
    ]
    check_numerics(m, g)


class ClampSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(-1, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad


class UsesClampSTE(nn.Module):
    def forward(self, x):
        return ClampSTE.apply(x)


def test_unidentified_autograd_function_names_its_class():
    with pytest.raises(GraphError) as info:
        trace_module(UsesClampSTE(), (3,), where="ste.py:UsesClampSTE")
    msg = str(info.value)
    assert msg.startswith("ste.py:UsesClampSTE: node clamp_ste_apply: op autograd Function ClampSTE (not identified as sign)")
    assert f"class at test_graph_trace.py:{inspect.getsourcelines(ClampSTE)[1]}" in msg and "supported:" in msg


class MyConv(nn.Conv2d):
    pass


class MyBN(nn.BatchNorm2d):
    pass


class MyDrop(nn.Dropout):
    def forward(self, x):
        return torch.exp(x)  # not a dropout any more: must not be dropped


def test_user_subclasses_keeping_torch_forward_are_the_torch_op():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MyConv(2, 3, 3)
            self.bn = MyBN(3)
            self.drop = MyDrop()

        def forward(self, x):
            return self.bn(self.conv(x))

    m = randomise_bn(Net()).eval()
    g = trace_module(m, (2, 5, 5))
    assert summary(g) == [("conv", "conv2d", ("input",), (3, 3, 3)), ("bn", "batch_norm", ("conv",), (3, 3, 3))]
    assert "conv (MyConv)" in g.node("conv").source
    check_numerics(m, g)

    class UsesDrop(Net):
        def forward(self, x):
            return self.drop(self.bn(self.conv(x)))

    with pytest.raises(GraphError, match="op exp is not supported"):
        trace_module(UsesDrop(), (2, 5, 5))
