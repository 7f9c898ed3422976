"""`--model-def FILE.py:NAME[(k=v)]` and `qexport inspect --graph` (issue 14 foundation): the loader
(library), the CLI in a subprocess, and its one-line refusals."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import LENET, import_file, run_cli
from qexport.errors import ModelDefError, QexportError
from qexport.graph.modeldef import graph_for_model_def, load_model_def, load_state, parse_spec

WARNING_START = "qexport: --model-def runs code from "

SIGMOID_LENET = '''
import torch
from torch import nn


class SigmoidLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = self.s2(torch.sigmoid(self.c1(x)))
        x = self.s4(torch.sigmoid(self.c3(x)))
        return self.output(self.f6(self.c5(x).flatten(1)))


class Renamed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)

    def forward(self, x):
        return self.conv1(x)


class WideC1(SigmoidLeNet):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, kernel_size=5, padding=2)


class Gelu(SigmoidLeNet):
    def forward(self, x):
        return nn.functional.gelu(self.c1(x))  # GELU_CALL


def make(width, classes=10, act="relu"):
    layers = [nn.Conv2d(1, width, 3), nn.ReLU() if act == "relu" else nn.Tanh(), nn.Flatten(),
              nn.Linear(width * 6 * 6, classes)]
    net = nn.Sequential(*layers)
    net.input_shape = (1, 8, 8)
    return net


def not_a_module():
    return 42
'''


@pytest.fixture()
def netfile(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(SIGMOID_LENET)
    return path


def _lenet_state():
    import torch

    from qexport.readers import read_model

    return dict(read_model(LENET).tensors), torch


def test_parse_spec_literal_arguments_only():
    spec = parse_spec("a/net.py:make(width=4, classes=3, act='tanh', dims=(1, 2))")
    assert (spec.file, spec.name, dict(spec.kwargs)) == ("a/net.py", "make", {"width": 4, "classes": 3, "act": "tanh", "dims": (1, 2)})
    assert spec.label == "net.py:make(width=4, classes=3, act='tanh', dims=(1, 2))"
    assert parse_spec("net.py:Net").kwargs == {}
    for bad in ("net.py", "net.py:make(4)", "net.py:make(w=__import__('os').system('true'))", "net.py:make(**d)"):
        with pytest.raises(ModelDefError):
            parse_spec(bad)


def test_function_with_keyword_arguments(netfile):
    graph, module = graph_for_model_def(f"{netfile}:make(width=4, classes=3, act='tanh')")
    assert [(n.name, n.op, n.output_shape) for n in graph.nodes] == [
        ("0", "conv2d", (4, 6, 6)), ("1", "tanh", (4, 6, 6)), ("2", "flatten", (144,)), ("3", "linear", (3,))]
    assert graph.origin == "model-def mynet.py:make(width=4, classes=3, act='tanh')"
    assert graph.input_shape == (1, 8, 8) and "input shape (1, 8, 8) from the module's input_shape" in graph.notes
    from test_graph_trace import check_numerics

    check_numerics(module, graph)


def test_sigmoid_lenet_from_file_loads_the_lenet_checkpoint(netfile):
    state, torch = _lenet_state()
    graph, module = graph_for_model_def(f"{netfile}:SigmoidLeNet", state, arch="lenet")
    assert graph.ops == ("conv2d", "sigmoid", "avg_pool2d", "conv2d", "sigmoid", "avg_pool2d", "conv2d", "flatten",
                         "linear", "linear")  # fmt: skip
    assert np.array_equal(module.c3.weight.detach().numpy(), state["c3.weight"])  # the checkpoint's weights were loaded
    from test_graph_trace import check_numerics

    check_numerics(module, graph)


def test_load_state_names_missing_unexpected_and_shapes(netfile):
    state, _ = _lenet_state()
    module, _, _ = load_model_def(f"{netfile}:WideC1")
    with pytest.raises(ModelDefError) as info:
        load_state(module, state, "mynet.py:WideC1")
    assert "shape mismatch c1.weight (6, 1, 5, 5) in the checkpoint, (8, 1, 5, 5) in the module" in str(info.value)
    module, _, _ = load_model_def(f"{netfile}:Renamed")
    with pytest.raises(ModelDefError) as info:
        load_state(module, state, "mynet.py:Renamed")
    msg = str(info.value)
    assert "missing keys conv1.weight, conv1.bias" in msg and "unexpected keys c1.weight, c1.bias, c3.weight" in msg
    assert isinstance(info.value, QexportError) and "\n" not in msg


def _one_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, r.stderr
    assert all(line == errors[0] or line.startswith(WARNING_START) for line in lines), r.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def test_cli_graph_of_documented_lenet_and_plain_inspect_ends_with_it():
    r = run_cli("inspect", "--graph", LENET)
    assert r.returncode == 0, r.stderr
    assert "graph from:    documented lenet" in r.stdout
    assert "assumption:    assumed seed 002's LeNet" in r.stdout and "--model-def" in r.stdout
    names = [line.split()[0] for line in r.stdout.splitlines() if " <- " in line and not line.startswith("node  op")]
    assert names == ["c1", "Relu", "s2", "c3", "Relu_1", "s4", "c5", "flatten", "f6", "output"]
    assert WARNING_START not in r.stderr
    plain = run_cli("inspect", LENET)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("file:          lenet_digits.pth")
    assert plain.stdout.endswith(r.stdout.split("architecture:  lenet\n", 1)[1])  # the same graph, at the end


def test_cli_model_def_prints_its_graph_and_warns_once(netfile):
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:SigmoidLeNet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(WARNING_START) == 1
    assert (f"{WARNING_START}{netfile} (your own module); the checkpoint itself is read with weights_only=True and "
            "runs nothing") in r.stderr  # fmt: skip
    assert "graph from:    model-def mynet.py:SigmoidLeNet" in r.stdout and "assumption:" not in r.stdout
    ops = [line.split()[1].split("[")[0] for line in r.stdout.splitlines() if " <- " in line and not line.startswith("node  op")]
    assert ops == ["conv2d", "sigmoid", "avg_pool2d", "conv2d", "sigmoid", "avg_pool2d", "conv2d", "flatten", "linear", "linear"]
    line = next(i for i, text in enumerate(SIGMOID_LENET.splitlines(), 1) if "self.s2(torch.sigmoid(self.c1(x)))" in text)
    assert f"@ c1 (Conv2d) at mynet.py:{line}" in r.stdout


def test_cli_inspect_help_stays_light():
    import subprocess
    import sys

    code = ("import sys\nfrom qexport.cli import cli\ntry:\n    cli.main(args=['inspect', '--help'], prog_name='qexport', "
            "standalone_mode=False)\nexcept SystemExit:\n    pass\nprint('MODULES: ' + ' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = set(out.stdout.strip().splitlines()[-1].removeprefix("MODULES: ").split())
    assert "click" in mods and "torch" not in mods
    r = run_cli("inspect", "--help")
    assert "--graph" in r.stdout and "--model-def" in r.stdout


def test_cli_missing_file(tmp_path):
    missing = tmp_path / "nope.py"
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{missing}:Net")
    _one_error(r, str(missing), "Net", "no such file")


def test_cli_import_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nimport qexport_no_such_package_14\n")
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{bad}:Net")
    _one_error(r, str(bad), "Net", "importing it failed: ModuleNotFoundError: No module named 'qexport_no_such_package_14'")


def test_cli_syntax_error(tmp_path):
    bad = tmp_path / "syntax.py"
    bad.write_text("def f(:\n")
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{bad}:f")
    _one_error(r, str(bad), "importing it failed: SyntaxError")


def test_cli_no_such_name(netfile):
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:LeNet5")
    err = _one_error(r, f"{netfile}:LeNet5", "no LeNet5 in")
    assert "SigmoidLeNet" in err and "make" in err  # what the file does define


def test_cli_missing_argument(netfile):
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:make")
    _one_error(r, f"{netfile}:make", "needs the argument(s) width", "make(width=...)")


def test_cli_unknown_argument_and_not_a_module(netfile):
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:make(width=2, depth=3)")
    _one_error(r, f"{netfile}:make", "takes no argument depth")
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:not_a_module")
    _one_error(r, f"{netfile}:not_a_module", "gave a int, not a torch.nn.Module")


def test_cli_key_mismatch(netfile):
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:Renamed")
    _one_error(r, f"{netfile}:Renamed", "does not fit the module", "missing keys conv1.weight", "unexpected keys c1.weight")
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:WideC1")
    _one_error(r, f"{netfile}:WideC1", "shape mismatch c1.weight")


def test_cli_unsupported_op(netfile):
    line = next(i for i, text in enumerate(SIGMOID_LENET.splitlines(), 1) if "GELU_CALL" in text)
    r = run_cli("inspect", "--graph", LENET, "--model-def", f"{netfile}:Gelu")
    _one_error(r, f"{netfile}:Gelu", "node gelu: op gelu is not supported", f"mynet.py:{line}", "supported: conv2d, ")


def test_cli_generic_checkpoint_needs_model_def(tmp_path):
    import torch

    path = tmp_path / "odd.pth"
    torch.save({"encoder.w": torch.zeros(3, 4)}, path)
    r = run_cli("inspect", "--graph", path)
    _one_error(r, "odd.pth", "generic reader", "--model-def")


@pytest.mark.parametrize("arch", ["lenet", "vgg_cifar10_binary", "twn_nin_gc", "resnet18_bnn", "mobilenet_v1"])
def test_graph_of_a_read_checkpoint_uses_the_readers_config(arch, tmp_path):
    """A saved checkpoint, read by its reader: the graph is traced from qexport's module built with
    the reader's config, and names only tensors of the checkpoint (all of them but counters)."""
    import torch

    from conftest import make_state
    from qexport.graph.stage import model_graph, with_graph
    from qexport.readers import read_model
    from test_graph_trace import SMALL

    path = tmp_path / f"{arch}.pth"
    torch.save(make_state(arch, SMALL[arch]), path)
    model = with_graph(read_model(path))
    graph = model_graph(model)
    assert graph.origin.startswith(f"documented {arch}")
    assert set(graph.param_names) == {k for k in model.tensors if not k.endswith("num_batches_tracked")}
    shapes = {n.name: n.output_shape for n in graph.nodes}
    assert shapes[graph.output] == (10,)


OTHER_NET = '''
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 12, 12)


class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, hidden)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv1(x))), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))
'''


def test_cli_model_def_for_a_generic_checkpoint(tmp_path):
    """A network qexport does not document: its graph comes from the user's file alone."""
    import torch

    path = tmp_path / "other.py"
    path.write_text(OTHER_NET)
    mod = import_file(path, "other_net_for_test")
    torch.manual_seed(5)
    ckpt = tmp_path / "other.pth"
    torch.save(mod.Net(hidden=8).state_dict(), ckpt)

    r = run_cli("inspect", "--graph", ckpt, "--model-def", f"{path}:Net(hidden=8)")
    assert r.returncode == 0, r.stderr
    assert "graph from:    model-def other.py:Net(hidden=8)" in r.stdout
    assert "note:          input shape (1, 12, 12) from INPUT_SHAPE of the file" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if " <- " in line and not line.startswith("node  op")]
    assert [(row[0], row[1].split("[")[0]) for row in rows] == [
        ("conv1", "conv2d"), ("bn", "batch_norm"), ("relu", "relu"), ("max_pool2d", "max_pool2d"),
        ("flatten", "flatten"), ("fc", "linear"), ("relu_1", "relu"), ("head", "linear")]  # fmt: skip
    assert "(8,)" in rows[5] and "(3,)" in rows[7]
    # the default hidden=16 does not fit this checkpoint: named, one line
    r = run_cli("inspect", "--graph", ckpt, "--model-def", f"{path}:Net")
    _one_error(r, f"{path}:Net", "shape mismatch fc.weight (8, 100) in the checkpoint, (16, 100) in the module")
    # without INPUT_SHAPE and no documented architecture, the input shape is asked for
    path.write_text(OTHER_NET.replace("INPUT_SHAPE = (1, 12, 12)", ""))
    r = run_cli("inspect", "--graph", ckpt, "--model-def", f"{path}:Net(hidden=8)")
    _one_error(r, f"{path}:Net", "the input shape is unknown", "INPUT_SHAPE = (C, H, W)")
