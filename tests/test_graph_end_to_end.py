"""Issue 14 end to end: `--model-def tests/graph_zoo.py:NAME` on every command, for networks we wrote
(tests/graph_zoo.py), through the command line (README "The network graph", "ONNX", "Golden
vectors").  Every refusal, the Sigmoid LeNet golden refusal, the onnx writer on the generic
checkpoint and one inspect --graph run in real subprocesses (run_cli: exit codes and stderr as
users see them); the other ~80 runs (the ONNX matrix of 9 networks x 4 plans with its npy
exports...) through the same click command in process (`in_process`), to stay within the file's
time budget on a shared 2-core machine.

Checkpoints are `torch.save(module.state_dict())` of seeded random weights with randomised BN
statistics.  Per zoo module:

a. `inspect --graph` prints exactly the node lines of graph_text(trace_module(...)) of a fresh
   instance, and the (name, op) sequence is the one written here by hand from reading the module;
b. `onnx` for the float plan and --bits 8 / 2 / 1 (and --bits 1 --no-alpha for the binary nets): onnxruntime equals the module's OWN forward in
   float64 carrying the weights we dequantize ourselves from a `qexport npy` export of the same
   plan (affine float32(q - Z) * scale, binary codes * alpha, ternary alpha * t, int32 bias
   b_q * (m / 2^s) / G, a folded BN removed, BNN thresholds as +-1 comparisons);
c. `golden --bits 1` for the binary nets: the manifest's stages, and acc / popcount recomputed here
   from the golden input stage and sign(checkpoint weights); the Sigmoid LeNet is refused in one line;
d. every writer command takes --model-def for a generic-reader checkpoint and says once that it
   runs the user's code;
e. bad --model-def through npy / cheader / golden: one line, exit 1, nothing written.

All runs are made by one module-scoped fixture (`runs`, the subprocesses two at a time in the
background); the tests read the results.
"""

from __future__ import annotations

import copy
import json
import subprocess
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import digits_test_split, import_file, run_cli
from onnx_support import onnx_close, onnx_run, onnx_torch_run

ZOO = Path(__file__).resolve().with_name("graph_zoo.py")
WARNING_START = "qexport: --model-def runs code from "
PLANS = ("float", "8", "2", "1")
N_DIGITS = 32
N_RGB = 8


def _zoo():
    mod = import_file(ZOO, "graph_zoo_for_e2e")
    return mod


Z = _zoo()

# name -> (the --model-def NAME[(k=v)], builder, input shape, (node name, op) written from the module)
ZOO_NETS = {
    "SigmoidLeNet": ("SigmoidLeNet", lambda: Z.SigmoidLeNet(), (1, 28, 28), [
        ("c1", "conv2d"), ("sigmoid", "sigmoid"), ("avg_pool2d", "avg_pool2d"), ("c3", "conv2d"),
        ("sigmoid_1", "sigmoid"), ("avg_pool2d_1", "avg_pool2d"), ("c5", "conv2d"), ("flatten", "flatten"),
        ("f6", "linear"), ("output", "linear")]),
    "RenamedLeNet": ("RenamedLeNet", lambda: Z.RenamedLeNet(), (1, 28, 28), [
        ("conv_a", "conv2d"), ("relu", "relu"), ("pool", "max_pool2d"), ("conv_b", "conv2d"), ("relu_1", "relu"),
        ("pool_1", "max_pool2d"), ("view", "reshape"), ("hidden", "linear"), ("relu_2", "relu"),
        ("logits", "linear")]),
    "NIN": ("NIN", lambda: Z.NIN(), (1, 28, 28), [
        ("conv1", "conv2d"), ("bn1", "batch_norm"), ("relu", "relu"), ("max_pool2d", "max_pool2d"),
        ("conv2", "conv2d"), ("bn2", "batch_norm"), ("relu_1", "relu"), ("conv3", "conv2d"),
        ("avg_pool2d", "avg_pool2d"), ("adaptive_avg_pool2d", "adaptive_avg_pool2d"), ("flatten", "flatten")]),
    "NIN2": ("NIN(groups=2)", lambda: Z.NIN(groups=2), (1, 28, 28), [
        ("conv1", "conv2d"), ("bn1", "batch_norm"), ("relu", "relu"), ("max_pool2d", "max_pool2d"),
        ("channel_shuffle", "channel_shuffle"), ("conv2", "conv2d"), ("bn2", "batch_norm"), ("relu_1", "relu"),
        ("conv3", "conv2d"), ("avg_pool2d", "avg_pool2d"), ("adaptive_avg_pool2d", "adaptive_avg_pool2d"),
        ("flatten", "flatten")]),
    "CNV": ("CNV", lambda: Z.CNV(), (3, 32, 32), [
        ("features.0", "binary_conv2d"), ("features.1", "batch_norm"), ("features.2", "hardtanh"),
        ("features.3", "max_pool2d"), ("features.4", "binary_conv2d"), ("features.5", "batch_norm"),
        ("features.6", "hardtanh"), ("features.7", "max_pool2d"), ("features.8", "binary_conv2d"),
        ("features.9", "batch_norm"), ("features.10", "hardtanh"), ("view", "reshape"),
        ("classifier.0", "binary_linear"), ("classifier.1", "batch_norm")]),
    "BinActiveNet": ("BinActiveNet", lambda: Z.BinActiveNet(), (1, 28, 28), [
        ("conv1", "conv2d"), ("relu", "relu"), ("bn1", "batch_norm"), ("bin_active_apply", "sign"),
        ("conv2", "conv2d"), ("max_pool2d", "max_pool2d"), ("bn2", "batch_norm"), ("bin_active_apply_1", "sign"),
        ("conv3", "conv2d"), ("relu_1", "relu"), ("flatten", "flatten"), ("fc", "linear")]),
    "ResNet": ("ResNet", lambda: Z.ResNet(), (1, 28, 28), [
        ("stem", "conv2d"), ("bn", "batch_norm"), ("relu", "relu"),
        ("block1.conv1", "conv2d"), ("block1.bn1", "batch_norm"), ("block1.relu_1", "relu"),
        ("block1.conv2", "conv2d"), ("block1.bn2", "batch_norm"), ("block1.add", "add"), ("block1.relu_2", "relu"),
        ("block2.conv1", "conv2d"), ("block2.bn1", "batch_norm"), ("block2.relu_3", "relu"),
        ("block2.conv2", "conv2d"), ("block2.bn2", "batch_norm"), ("block2.shortcut.0", "conv2d"),
        ("block2.shortcut.1", "batch_norm"), ("block2.add_1", "add"), ("block2.relu_4", "relu"),
        ("adaptive_avg_pool2d", "adaptive_avg_pool2d"), ("flatten", "flatten"), ("fc", "linear")]),
    "MobileNetV2ish": ("MobileNetV2ish", lambda: Z.MobileNetV2ish(), (1, 28, 28), [
        ("stem", "conv2d"), ("bn", "batch_norm"), ("act", "relu6")]
        + [(f"blocks.{i}.{n}", op) for i, suffix in ((0, ("", "_1", "")), (1, ("_2", "_3", "_1")))
           for n, op in (("expand", "conv2d"), ("bn1", "batch_norm"), (f"relu6{suffix[0]}", "relu6"),
                         ("dw", "conv2d"), ("bn2", "batch_norm"), (f"relu6{suffix[1]}", "relu6"),
                         ("project", "conv2d"), ("bn3", "batch_norm"), (f"add{suffix[2]}", "add"))]
        + [("pool", "adaptive_avg_pool2d"), ("flatten", "flatten"), ("head", "linear")]),
    "make_cnn": ("make_cnn(width=6, classes=10)", lambda: Z.make_cnn(width=6, classes=10), (1, 28, 28), [
        ("0", "conv2d"), ("1", "relu"), ("2", "max_pool2d"), ("3", "conv2d"), ("4", "relu"), ("5", "max_pool2d"),
        ("6", "flatten"), ("7", "linear")]),
}  # fmt: skip
GENERIC = "RenamedLeNet"  # a checkpoint no documented reader claims
BINARY_NETS = ("CNV", "BinActiveNet")
# (net, plan) -> the exact one-line refusal qexport gives (none known: every scheme is expected to work)
REFUSED: dict[tuple[str, str], str] = {}


def model_def(name: str) -> str:
    return f"{ZOO}:{ZOO_NETS[name][0]}"


def build(name: str):
    return ZOO_NETS[name][1]()


def randomise(module, seed: int):
    """Seeded random weights; BN running statistics and affine parameters far from identity."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
    gen = torch.Generator().manual_seed(seed + 100)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(77)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.weight.shape, generator=gen) * 0.4 + 1.0)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
    return module.eval()


def inputs_for(name: str) -> np.ndarray:
    """float32 network inputs: real digits (N x 1 x 28 x 28, /255), or seeded random RGB codes / 256."""
    shape = ZOO_NETS[name][2]
    if shape == (1, 28, 28):
        x, _ = digits_test_split()
        return (x[:N_DIGITS].astype(np.float32) / 255.0)[:, None]
    return rgb_codes().astype(np.float32) / np.float32(256.0)


def rgb_codes() -> np.ndarray:
    return np.random.default_rng(1414).integers(0, 256, size=(N_RGB, 3, 32, 32), dtype=np.uint8)


def in_process(*args) -> subprocess.CompletedProcess:
    """The same click command line (`qexport.cli:cli`, its one-line error conversion included) run
    in this process, as a CompletedProcess: a subprocess costs 3-9 s of torch imports on the shared
    2-core machine, and this file makes ~90 runs.  An exception that escaped click shows up as a
    "Traceback" in stderr, so the one-line checks still see it (click >= 8.2 keeps stderr apart)."""
    from click.testing import CliRunner

    from qexport.cli import cli

    argv = [str(a) for a in args]
    r = CliRunner().invoke(cli, argv, prog_name="qexport")
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (escaped the CLI, in process):\n" + "".join(traceback.format_exception(*r.exc_info))
    return subprocess.CompletedProcess(argv, r.exit_code, r.stdout, stderr)


def run_all(subprocess_jobs: dict, in_process_jobs: dict) -> dict:
    """{key: args} -> {key: CompletedProcess}: the subprocesses (the real CLI, run_cli) two at a time
    in the background while the in-process runs go on here."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(run_cli, *args) for key, args in subprocess_jobs.items()}
        done = {key: in_process(*args) for key, args in in_process_jobs.items()}
        done.update({key: f.result() for key, f in futures.items()})
    return done


def one_error(r, *needles) -> str:
    """exit 1, no traceback, exactly one `Error:` line (besides the --model-def warning)."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, r.stderr
    assert all(line == errors[0] or line.startswith(WARNING_START) or line.startswith("qexport: note:")
               for line in lines), r.stderr  # fmt: skip
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# ---------------------------------------------------------------- fixtures: checkpoints and CLI runs


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """name -> (checkpoint path, the module instance holding exactly those weights)."""
    import torch

    folder = tmp_path_factory.mktemp("zoo")
    out = {}
    for i, name in enumerate(ZOO_NETS):
        module = randomise(build(name), seed=140 + i)
        path = folder / f"{name}.pth"
        torch.save(module.state_dict(), path)
        out[name] = (path, module)
    return out


def _plan_args(plan: str) -> list[str]:
    """float: as trained; "8" / "2" / "1": --bits N; "1-no-alpha": binary +-1 weights without alpha."""
    return {"float": [], "1-no-alpha": ["--bits", "1", "--no-alpha"]}.get(plan, ["--bits", plan])


def plans_of(name: str) -> tuple[str, ...]:
    return PLANS + (("1-no-alpha",) if name in BINARY_NETS else ())


@pytest.fixture(scope="module")
def runs(ckpts, tmp_path_factory):
    """Every CLI run of this file -> (results, paths): the refusals, the plain inspect, one inspect
    --graph, golden of the Sigmoid LeNet and the onnx writer as real subprocesses; the rest (the
    ONNX matrix with its npy exports, the other inspect / golden / writer runs) in process."""
    folder = tmp_path_factory.mktemp("runs")
    sub, inproc, paths = {}, {}, {}
    for name, (ckpt, _) in ckpts.items():
        (sub if name == "CNV" else inproc)[("inspect", name)] = ("inspect", ckpt, "--model-def", model_def(name),
                                                                  "--graph")  # fmt: skip
        for plan in plans_of(name):
            out = paths[("onnx", name, plan)] = folder / f"{name}_{plan}.onnx"
            inproc[("onnx", name, plan)] = ("onnx", ckpt, "--model-def", model_def(name), *_plan_args(plan), "-o", out)
            if plan != "float":  # the npy export the reference reads its codes and parameters from
                out = paths[("npy", name, plan)] = folder / f"{name}_{plan}_npy"
                inproc[("npy", name, plan)] = ("npy", ckpt, "--model-def", model_def(name), *_plan_args(plan), "-o",
                                               out)  # fmt: skip
    sub[("inspect_plain", GENERIC)] = ("inspect", ckpts[GENERIC][0])
    for name in BINARY_NETS + ("SigmoidLeNet",):
        npz = folder / f"{name}_inputs.npz"
        if ZOO_NETS[name][2] == (1, 28, 28):
            x, y = digits_test_split()
            np.savez(npz, images=x[:N_DIGITS], labels=y[:N_DIGITS].astype(np.int64))
        else:
            np.savez(npz, images=rgb_codes())
        out = paths[("golden", name)] = folder / f"{name}_golden"
        bits = ["--bits", "1"] if name in BINARY_NETS else []
        (inproc if name in BINARY_NETS else sub)[("golden", name)] = (
            "golden", ckpts[name][0], "--model-def", model_def(name), *bits, "-i", npz, "-o", out)  # fmt: skip
    for cmd, suffix in WRITERS.items():  # every writer command on the generic-reader checkpoint
        out = paths[("writer", cmd)] = folder / f"generic_{cmd}{suffix}"
        (sub if cmd == "onnx" else inproc)[("writer", cmd)] = (
            cmd, ckpts[GENERIC][0], "--model-def", model_def(GENERIC), "--bits", "8", "-o", out)  # fmt: skip
    for key, (cmd, spec, extra) in BAD.items():  # bad --model-def through commands other than inspect / onnx
        out = paths[("bad", key)] = folder / f"bad_{key}"
        spec_text = spec.format(zoo=ZOO, missing=folder / "no_such_net.py")
        sub[("bad", key)] = (cmd, ckpts[GENERIC][0], "--model-def", spec_text, *extra, "-o", out)
    return run_all(sub, inproc), paths


WRITERS = {"mat": ".mat", "txt": "", "npy": "", "h5": ".h5", "cheader": ".h", "mem": "", "onnx": ".onnx"}
BAD = {  # key -> (command, --model-def, extra options); the checkpoint is the generic RenamedLeNet
    "missing_file": ("npy", "{missing}:Net", ["--bits", "8"]),
    "no_such_name": ("golden", "{zoo}:LeNet5", ["--bits", "1", "--samples", "2"]),
    "does_not_fit": ("cheader", "{zoo}:SigmoidLeNet", ["--bits", "8"]),
    "does_not_fit_mem": ("mem", "{zoo}:make_cnn(width=6)", ["--bits", "8"]),
}


# ---------------------------------------------------------------- a. inspect --graph


def _node_lines(text: str, names) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("node  op[attrs]"))
    end = next(i for i, line in enumerate(lines) if line.startswith("output:") and i > start)
    body = lines[start + 1:end]
    assert [line.split(" ")[0] for line in body] == list(names)
    return body


@pytest.mark.parametrize("name", list(ZOO_NETS))
def test_inspect_graph_prints_the_traced_graph(name, runs, ckpts):
    from qexport.graph import graph_text, trace_module

    r = runs[0][("inspect", name)]
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(WARNING_START) == 1, r.stderr
    spec, _, shape, expected_ops = ZOO_NETS[name]
    label = f"graph_zoo.py:{spec}"
    assert f"graph from:    model-def {label}" in r.stdout
    fresh = trace_module(build(name), shape, origin=f"model-def {label}")
    assert [(n.name, n.op) for n in fresh.nodes] == expected_ops  # the tracer agrees with our reading
    names = [n for n, _ in expected_ops]
    assert _node_lines(r.stdout, names) == _node_lines(graph_text(fresh), names)
    assert f"input shape:   {shape}" in r.stdout


# ---------------------------------------------------------------- b. onnx, float and quantized


def _param(folder: Path, entry: dict) -> np.ndarray:
    if "value" in entry:
        return np.asarray(entry["value"], dtype=entry["dtype"])
    return np.load(folder / entry["file"], allow_pickle=False)


def _col(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim == 1 else v


class Threshold:
    """BN + sign as integer thresholds (README "Numerics", BN): +1 iff (flip ? acc <= tau : acc >= tau)."""

    @staticmethod
    def module(tau, flip, ndim):
        import torch
        from torch import nn

        class _T(nn.Module):
            def __init__(self):
                super().__init__()
                shape = (-1,) + (1,) * (ndim - 2)
                self.tau = torch.tensor(np.asarray(tau, np.float64).reshape(shape))
                self.flip = torch.tensor(np.asarray(flip).astype(bool).reshape(shape))

            def forward(self, acc):
                a = acc.double()
                return torch.where(torch.where(self.flip, a <= self.tau, a >= self.tau), 1.0, -1.0).to(acc.dtype)

        return _T()


def reference_module(module, folder: Path):
    """A copy of the user's module carrying the weights the npy export `folder` stands for."""
    import torch
    from torch import nn

    ref = copy.deepcopy(module)
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {a["name"]: a for a in manifest["arrays"]}
    for layer in manifest["layers"]:
        p = {k: _param(folder, v) for k, v in layer["params"].items()}
        codes = np.load(folder / layer["weight_file"], allow_pickle=False)
        assert arrays[layer["weight"]]["layout"] in ("oihw", "oi")
        if layer["scheme"] == "affine":
            w = (codes.astype(np.int64) - _col(p["zero_point"], codes.ndim)).astype(np.float32) \
                * _col(p["scale"].astype(np.float32), codes.ndim)
        elif layer["scheme"] in ("binary", "ternary"):
            assert set(np.unique(codes)) <= ({-1, 1} if layer["scheme"] == "binary" else {-1, 0, 1})
            w = codes.astype(np.float32) * (_col(p["alpha"].astype(np.float32), codes.ndim) if "alpha" in p else 1)
        else:
            raise AssertionError(f"unexpected scheme {layer['scheme']}")
        conv = ref.get_submodule(layer["name"])
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        bias = None
        if layer.get("bias_file"):
            b = np.load(folder / layer["bias_file"], allow_pickle=False)
            if arrays[layer["bias"]]["scheme"] == "int32":
                step = np.float32(p["multiplier"].astype(np.float64) / 2.0 ** p["shift"].astype(np.float64)
                                  / float(p["input_gain"]))  # fmt: skip
                bias = b.astype(np.float32) * step
            else:
                bias = b.astype(np.float32)
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(len(bias)))
            conv.bias.data = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
        bn = layer.get("folded_bn")
        if bn and "threshold" in p:
            ndim = 4 if isinstance(ref.get_submodule(bn), nn.BatchNorm2d) else 2
            ref.set_submodule(bn, Threshold.module(p["threshold"], p["flip"], ndim))
            conv.bias = None
        elif bn:
            ref.set_submodule(bn, nn.Identity())
    return ref.eval()


@pytest.mark.parametrize("name, plan", [(n, p) for n in ZOO_NETS for p in plans_of(n)])
def test_onnx_equals_the_users_module_with_dequantized_weights(name, plan, runs, ckpts):
    import onnx

    from onnx_support import onnx_initializers

    results, paths = runs
    r, out = results[("onnx", name, plan)], paths[("onnx", name, plan)]
    if (name, plan) in REFUSED:
        one_error(r, REFUSED[(name, plan)])
        assert not out.exists()
        return
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(WARNING_START) == 1, r.stderr
    assert "assumed seed" not in r.stderr  # the user's module, not qexport's
    _, module = ckpts[name]
    if plan == "float":
        ref = copy.deepcopy(module)
    else:
        npy, folder = results[("npy", name, plan)], paths[("npy", name, plan)]
        assert npy.returncode == 0, npy.stderr
        ref = reference_module(module, folder)
    x = inputs_for(name)
    expected = onnx_torch_run(ref, x)
    got = onnx_run(out, x)
    ok, err, tol = onnx_close(got, expected)
    assert ok, (err, tol)
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert f"--model-def graph_zoo.py:{ZOO_NETS[name][0]}" in meta["qexport.options"]
    if plan != "float":  # the integer initializers are the npy export's codes, every quantized layer
        init = onnx_initializers(proto)
        manifest = json.loads((folder / "manifest.json").read_text())
        convs = [n for n, op in ZOO_NETS[name][3] if op.endswith(("conv2d", "linear"))]
        assert sorted(layer["name"] for layer in manifest["layers"]) == sorted(convs)
        schemes = {layer["scheme"] for layer in manifest["layers"]}
        assert schemes == {{"8": "affine", "2": "ternary"}.get(plan, "binary")}
        assert all(("alpha" in layer["params"]) == (plan == "1") for layer in manifest["layers"] if plan[0] == "1")
        for layer in manifest["layers"]:
            codes = np.load(folder / layer["weight_file"], allow_pickle=False)
            q = init[f"{layer['weight']}_quantized"]
            assert np.array_equal(q.astype(np.int64), codes.astype(np.int64)), layer["name"]


def test_bn_is_not_folded_into_a_layer_that_binarizes_its_weights(runs, ckpts):
    """CNV --bits 8: features.{0,4,8} and classifier.0 compute with sign(W) (BinarizeConv2d /
    BinarizeLinear; the graph says binary_conv2d / binary_linear).  Folding BN into them is not
    an identity: sign(W * gamma/sigma) keeps only the sign of gamma, and the BN's scale and shift
    are gone with the BN, so the export stops being the trained network whatever the bit width.
    Shown here in float64 without any quantization, then asked of qexport's plan."""
    import torch

    _, module = ckpts["CNV"]
    x = torch.from_numpy(inputs_for("CNV").astype(np.float64))
    trained = copy.deepcopy(module).double()
    folded = copy.deepcopy(module).double()
    with torch.no_grad():
        for conv, bn in (("features.0", "features.1"), ("features.4", "features.5"), ("features.8", "features.9"),
                         ("classifier.0", "classifier.1")):  # fmt: skip
            c, b = folded.get_submodule(conv), folded.get_submodule(bn)
            k = b.weight / torch.sqrt(b.running_var + b.eps)
            c.weight.mul_(k.reshape((-1,) + (1,) * (c.weight.ndim - 1)))
            c.bias = torch.nn.Parameter(b.bias - b.running_mean * k)
            folded.set_submodule(bn, torch.nn.Identity())
        assert not torch.allclose(folded(x), trained(x), atol=1e-3)  # folding changes the function
    results, paths = runs
    manifest = json.loads((paths[("npy", "CNV", "8")] / "manifest.json").read_text())
    binarizing = {n for n, op in ZOO_NETS["CNV"][3] if op in ("binary_conv2d", "binary_linear")}
    folded_bn = {layer["name"]: layer["folded_bn"] for layer in manifest["layers"]
                 if layer.get("folded_bn") and layer["name"] in binarizing}  # fmt: skip
    assert folded_bn == {}, f"BN folded into layers that binarize their weights: {folded_bn}"


def test_the_reference_carries_quantized_weights(ckpts, runs):
    """--bits 1 of the RenamedLeNet: the reference's weights are +-alpha_c (alpha_c = mean|W_c|) of
    sign(w), not the float weights (so the matrix above compares quantized networks)."""
    _, module = ckpts[GENERIC]
    npy, folder = runs[0][("npy", GENERIC, "1")], runs[1][("npy", GENERIC, "1")]
    assert npy.returncode == 0, npy.stderr
    ref = reference_module(module, folder)
    w = module.conv_a.weight.detach().numpy().astype(np.float64)
    alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1)
    expected = np.where(w > 0, 1.0, -1.0) * alpha[:, None, None, None]
    np.testing.assert_allclose(ref.conv_a.weight.detach().numpy(), expected, rtol=1e-6)


# ---------------------------------------------------------------- c. golden


def _np_conv_pm1(x: np.ndarray, w: np.ndarray, stride, padding, pad_value: int) -> np.ndarray:
    """Integer convolution of +-1 activations by +-1 weights; padded positions hold pad_value."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.int64))
    return out


# binary layers with binarized input, and (stride, padding) read from graph_zoo.py
GOLDEN_LAYERS = {
    "CNV": {"features.4": ((1, 1), (1, 1)), "features.8": ((1, 1), (0, 0)), "classifier.0": None},
    "BinActiveNet": {"conv2": ((1, 1), (1, 1)), "conv3": ((2, 2), (1, 1))},
}


@pytest.mark.parametrize("name", BINARY_NETS)
def test_golden_binary_layers_popcount_and_acc(name, runs, ckpts):
    import torch

    results, paths = runs
    r = results[("golden", name)]
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(WARNING_START) == 1, r.stderr
    out = paths[("golden", name)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "binary-popcount"
    stages = {s["name"]: s for s in manifest["stages"]}
    layers = GOLDEN_LAYERS[name]
    for layer in layers:
        for suffix in ("input", "input_packed", "popcount", "acc"):
            assert f"{layer}.{suffix}" in stages, (layer, suffix, list(stages))
    assert {s.get("layer") for s in manifest["stages"] if s.get("layer")} == set(layers)  # no other layer
    load = lambda stage: np.load(out / stages[stage]["file"], allow_pickle=False)  # noqa: E731
    n = N_DIGITS if ZOO_NETS[name][2] == (1, 28, 28) else N_RGB
    assert load("input").shape[0] == n
    gain = manifest["input_gain"]

    # the pre-binarization inputs of the user's module, float64, carrying +-alpha_c * sign(w)
    _, module = ckpts[name]
    ref = copy.deepcopy(module).double()
    state = ref.state_dict()
    for key, value in state.items():
        owner = ref.get_submodule(key.rsplit(".", 1)[0])
        if key.endswith(".weight") and isinstance(owner, (torch.nn.Conv2d, torch.nn.Linear)):
            w = value.numpy()
            alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1).reshape((-1,) + (1,) * (w.ndim - 1))
            state[key] = torch.from_numpy(np.where(w > 0, 1.0, -1.0) * alpha)
    ref.load_state_dict(state)
    captured = {}
    for layer in layers:
        ref.get_submodule(layer).register_forward_pre_hook(
            lambda m, args, layer=layer: captured.__setitem__(layer, args[0].detach().numpy().copy()))
    images = load("input")
    with torch.no_grad():
        logits = ref(torch.from_numpy(images.astype(np.float64) / gain)).numpy()

    for layer, geometry in layers.items():
        x = load(f"{layer}.input").astype(np.int64)
        assert set(np.unique(x)) <= {-1, 1}
        clear = np.abs(captured[layer]) > 1e-6  # away from the sign's decision point
        assert clear.mean() > 0.95
        assert np.array_equal(x.reshape(captured[layer].shape)[clear], np.where(captured[layer] > 0, 1, -1)[clear])
        w = module.get_submodule(layer).weight.detach().numpy()
        wsign = np.where(w > 0, 1, -1).astype(np.int64)
        acc, pop = load(f"{layer}.acc"), load(f"{layer}.popcount")
        if geometry is None:  # linear
            x2 = x.reshape(x.shape[0], -1)
            assert np.array_equal(acc, x2 @ wsign.T) and np.array_equal(pop, acc)
        else:
            stride, padding = geometry
            assert np.array_equal(acc, _np_conv_pm1(x, wsign, stride, padding, 0)), layer  # zero padding adds 0
            assert np.array_equal(pop, _np_conv_pm1(x, wsign, stride, padding, -1)), layer  # padding taken as -1
    pred = load("prediction")
    top = np.sort(logits, axis=1)
    sure = top[:, -1] - top[:, -2] > 1e-3
    assert sure.sum() >= len(pred) // 2 and np.array_equal(pred[sure], logits.argmax(1)[sure])


def test_golden_refuses_the_sigmoid_lenet_in_one_line(runs):
    r = runs[0][("golden", "SigmoidLeNet")]
    err = one_error(r)
    assert "sigmoid" in err.lower(), err  # names what the integer pass does not support
    assert r.stderr.count(WARNING_START) <= 1
    assert not runs[1][("golden", "SigmoidLeNet")].exists()


# ---------------------------------------------------------------- d. every command, generic reader


@pytest.mark.parametrize("cmd", list(WRITERS))
def test_every_writer_takes_model_def_for_a_generic_checkpoint(cmd, runs):
    results, paths = runs
    r = results[("writer", cmd)]
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(WARNING_START) == 1, r.stderr
    assert f"{WARNING_START}{ZOO} (your own module)" in r.stderr
    assert paths[("writer", cmd)].exists()


def test_the_generic_checkpoint_is_read_by_the_generic_reader(runs):
    r = runs[0][("inspect_plain", GENERIC)]
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("architecture:  generic"), r.stdout


# ---------------------------------------------------------------- e. bad --model-def, other commands


@pytest.mark.parametrize("key", list(BAD))
def test_bad_model_def_through_other_commands(key, runs):
    results, paths = runs
    r = results[("bad", key)]
    cmd, spec, _ = BAD[key]
    if key == "missing_file":
        one_error(r, "no_such_net.py", "Net", "no such file")
    elif key == "no_such_name":
        err = one_error(r, f"{ZOO}:LeNet5", "no LeNet5 in")
        assert "SigmoidLeNet" in err and "make_cnn" in err
    elif key == "does_not_fit":
        one_error(r, f"{ZOO}:SigmoidLeNet", "does not fit the module", "missing keys c1.weight",
                  "unexpected keys conv_a.weight")
    else:
        one_error(r, f"{ZOO}:make_cnn", "does not fit the module", "missing keys 0.weight")
    assert not paths[("bad", key)].exists()
