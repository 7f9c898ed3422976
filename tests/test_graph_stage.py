"""The graph stage (README "The network graph"): where a model's graph comes from, the layer list
found in it, the assumption in every output's provenance, and `--model-def` on every command.

Expected layer lists below are written by hand from reading the modules, not produced by the code
under test; the documented readers' lists (hand-written annotations in qexport/readers/) are the
independent side of the reader-vs-graph check."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from conftest import ARCHS, LENET, import_file, make_state, run_cli
from qexport.graph.layers import compare_layers, layers_from_graph
from qexport.graph.stage import model_graph, with_graph
from qexport.readers import read_model
from test_graph_trace import SMALL

NET = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn

    INPUT_SHAPE = (1, 28, 28)

    class Renamed(nn.Module):
        """A small CNN no documented reader claims: BN after conv1, max pool, Sigmoid, avg pool."""
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.bn = nn.BatchNorm2d(6)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            x = F.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
            x = F.avg_pool2d(torch.sigmoid(self.conv2(x)), 2)
            return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))

    class ReluLeNet(nn.Module):
        """Seed 002's network written out here: ReLU after c1 and c3, average pools."""
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5, padding=2)
            self.s2 = nn.AvgPool2d(2)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.s4 = nn.AvgPool2d(2)
            self.c5 = nn.Conv2d(16, 120, 5)
            self.f6 = nn.Linear(120, 84)
            self.output = nn.Linear(84, 10)

        def forward(self, x):
            x = self.s2(F.relu(self.c1(x)))
            x = self.s4(F.relu(self.c3(x)))
            return self.output(self.f6(self.c5(x).flatten(1)))

    class SigLeNet(ReluLeNet):
        def forward(self, x):
            x = self.s2(torch.sigmoid(self.c1(x)))
            x = self.s4(torch.sigmoid(self.c3(x)))
            return self.output(self.f6(self.c5(x).flatten(1)))
''')


@pytest.fixture(scope="module")
def netdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage")
    (folder / "net.py").write_text(NET)
    mod = import_file(folder / "net.py", "test_stage_net")
    torch.manual_seed(3)
    renamed = mod.Renamed().eval()
    with torch.no_grad():
        renamed.bn.running_mean.uniform_(-0.2, 0.2)
        renamed.bn.running_var.uniform_(0.5, 1.5)
    torch.save(renamed.state_dict(), folder / "renamed.pth")
    return folder, mod


SMALL_CONFIGS = [(arch, cfg) for arch, cfg in ARCHS.items()] + [(arch, cfg) for arch, cfg in SMALL.items() if cfg]


@pytest.mark.parametrize("arch,config", SMALL_CONFIGS, ids=lambda v: v if isinstance(v, str) else "")
def test_documented_readers_agree_with_their_graphs(arch, config, tmp_path):
    """Every documented reader's hand-written layer list (kinds, parameters, BN, foldability,
    binarized input, sign/pool/activation words) is what the traced graph of its module implies."""
    path = tmp_path / "m.pth"
    torch.save(make_state(arch, config), path)
    model = with_graph(read_model(path))
    assert model.arch == arch and model.graph is None  # documented: traced on demand
    graph_layers = layers_from_graph(model_graph(model), model.tensors)
    assert compare_layers(model.layers, graph_layers) == []


def test_the_reader_check_can_fail():
    """A reader list that forgot a BN, or thinks an input binarized, is reported."""
    from dataclasses import replace

    from qexport.model import frozen_map

    model = with_graph(read_model(LENET))
    graph_layers = layers_from_graph(model_graph(model), model.tensors)
    wrong = list(model.layers)
    wrong[0] = replace(wrong[0], attrs=frozen_map({**wrong[0].attrs, "binary_input": True}))
    assert compare_layers(tuple(wrong), graph_layers) == ["c1: binary_input True (reader) vs False (graph)"]
    assert "are in one list only" in compare_layers(tuple(wrong[1:]), graph_layers)[0]


def test_layers_found_in_your_graph(netdir):
    folder, _ = netdir
    model = with_graph(read_model(folder / "renamed.pth"), str(folder / "net.py") + ":Renamed")
    assert model.arch == "generic" and model.has_graph and model.graph_origin == "model-def net.py:Renamed"
    got = {layer.name: (layer.kind, layer.weight, layer.bias, dict(layer.attrs)) for layer in model.layers}
    assert list(got) == ["conv1", "bn", "conv2", "fc1", "fc2"]
    assert got["conv1"] == ("conv", "conv1.weight", "conv1.bias", dict(
        in_channels=1, out_channels=6, kernel=(5, 5), stride=(1, 1), padding=(2, 2), groups=1, binary_input=False,
        bn="bn", bn_direct=True, follows=("bn:bn", "relu", "maxpool2")))
    assert got["bn"][0] == "bn" and got["bn"][3] == dict(num_features=6, eps=1e-5, affine=True,
                                                          follows=("relu", "maxpool2", "conv:conv2"))
    assert got["conv2"][3]["follows"] == ("sigmoid", "avgpool2", "flatten") and "bn" not in got["conv2"][3]
    assert got["fc1"][3] == dict(in_features=400, out_features=32, binary_input=False, follows=("relu",))
    assert got["fc2"][3] == dict(in_features=32, out_features=10, binary_input=False, follows=())


def _provenance_lines(header: str) -> list[str]:
    return [line for line in header.splitlines() if line.startswith((" * graph:", " * assumption:"))]


def test_assumption_in_provenance_and_on_stderr_for_every_command(tmp_path):
    r = run_cli("cheader", "--bits", "8", LENET, "-o", tmp_path / "l.h")
    assert r.returncode == 0, r.stderr
    assert "qexport: note: assumed seed 002's LeNet (qexport.models.lenet): ReLU after c1 and c3" in r.stderr
    lines = _provenance_lines((tmp_path / "l.h").read_text())
    assert lines[0] == " * graph: documented lenet"
    assert lines[1].startswith(" * assumption: assumed seed 002's LeNet") and "--model-def" in lines[1]
    r = run_cli("npy", LENET, "-o", tmp_path / "n")
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert manifest["provenance"]["graph"] == "documented lenet"
    assert "ReLU after c1 and c3" in manifest["provenance"]["assumption"]


def test_generic_checkpoint_without_model_def_has_no_graph_and_onnx_names_the_fix(netdir, tmp_path):
    folder, _ = netdir
    r = run_cli("npy", folder / "renamed.pth", "-o", tmp_path / "n")
    assert r.returncode == 0, r.stderr
    prov = json.loads((tmp_path / "n" / "manifest.json").read_text())["provenance"]
    assert "graph" not in prov and "assumption" not in prov
    r = run_cli("onnx", folder / "renamed.pth", "-o", tmp_path / "x.onnx")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "give --model-def FILE.py:NAME" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.onnx").exists()


def test_model_def_on_a_generic_checkpoint_every_writer(netdir, tmp_path):
    folder, _ = netdir
    spec = f"{folder / 'net.py'}:Renamed"
    for cmd, out in (("mat", "r.mat"), ("txt", "r.txt"), ("h5", "r.h5"), ("cheader", "r.h"), ("mem", "r_mem")):
        r = run_cli(cmd, "--bits", "8", folder / "renamed.pth", "--model-def", spec, "-o", tmp_path / out)
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stderr.count("qexport: --model-def runs code from") == 1, r.stderr
        assert "assumed" not in r.stderr
    text = (tmp_path / "r.h").read_text()
    assert " * graph: model-def net.py:Renamed" in text and "--model-def net.py:Renamed" in text
    # --fold-bn folds the BN the graph puts right after conv1 (seen in the header's facts)
    r = run_cli("cheader", "--bits", "8", "--fold-bn", folder / "renamed.pth", "--model-def", spec, "-o", tmp_path / "f.h")
    assert r.returncode == 0, r.stderr
    assert "folded_bn: bn" in (tmp_path / "f.h").read_text()


def test_plan_seed_without_a_seed_plan_is_a_usage_error(netdir):
    folder, _ = netdir
    r = run_cli("txt", "--plan", "seed", folder / "renamed.pth", "--model-def", f"{folder / 'net.py'}:Renamed")
    assert r.returncode == 2 and "has no seed plan" in r.stderr and "--bits N" in r.stderr


def test_library_model_def_instance_is_not_changed(netdir, tmp_path):
    from qexport.export import export

    folder, mod = netdir
    mine = mod.Renamed()
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    outs, encoded = export("onnx", folder / "renamed.pth", tmp_path / "lib.onnx", bits=8, model_def=mine)
    assert outs[0].is_file() and encoded.quantized.model.graph_origin == "module Renamed"
    assert "--model-def <module Renamed>" in encoded.quantized.options_text
    assert all(torch.equal(before[k], v) for k, v in mine.state_dict().items())  # still its own weights


def test_same_network_by_model_def_gives_the_same_arrays(netdir, tmp_path):
    """Seed 002's LeNet written in the test, given as --model-def for the documented checkpoint:
    every line of the header except the provenance (graph, assumption, options) is the same, and
    the golden vectors are the same stages with the same bytes."""
    folder, _ = netdir
    spec = f"{folder / 'net.py'}:ReluLeNet"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = run_cli("cheader", "--plan", "seed", LENET, "-o", tmp_path / "a" / "l.h")
    b = run_cli("cheader", "--plan", "seed", LENET, "--model-def", spec, "-o", tmp_path / "b" / "l.h")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    keep = lambda text: [line for line in text.splitlines()
                         if not line.startswith((" * graph:", " * assumption:", " * options:"))]  # noqa: E731
    ta, tb = (tmp_path / "a" / "l.h").read_text(), (tmp_path / "b" / "l.h").read_text()
    assert ta != tb and keep(ta) == keep(tb)
    ga = run_cli("golden", LENET, "-n", "5", "-o", tmp_path / "ga")
    gb = run_cli("golden", LENET, "-n", "5", "--model-def", spec, "-o", tmp_path / "gb")
    assert ga.returncode == 0 and gb.returncode == 0, (ga.stderr, gb.stderr)
    names = sorted(p.name for p in (tmp_path / "ga").glob("*.npy"))
    assert names == sorted(p.name for p in (tmp_path / "gb").glob("*.npy")) and "c1.npy" in names
    for name in names:
        assert np.array_equal(np.load(tmp_path / "ga" / name), np.load(tmp_path / "gb" / name)), name


def test_golden_refuses_a_sigmoid_lenet_naming_the_node(netdir, tmp_path):
    folder, _ = netdir
    r = run_cli("golden", LENET, "-n", "3", "--model-def", f"{folder / 'net.py'}:SigLeNet", "-o", tmp_path / "g")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "node sigmoid is sigmoid where seed 002's LeNet has relu" in last, last
    assert not (tmp_path / "g").exists()


def test_a_torch_export_program_is_refused_unread(tmp_path):
    """torch.export.load would unpickle (weights_only=False): a .pt2 is named and refused."""
    program = torch.export.export(torch.nn.Sequential(torch.nn.Linear(4, 2)), (torch.zeros(1, 4),))
    torch.export.save(program, tmp_path / "m.pt2")
    r = run_cli("npy", tmp_path / "m.pt2", "-o", tmp_path / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "a torch.export program (.pt2)" in line and "--model-def" in line
    assert not (tmp_path / "out").exists()
