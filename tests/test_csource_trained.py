"""`qexport csource` on the five trained fixtures (fixtures/trained.py ARCHS, plans PLANS), calibrated
on training digits like benchmarks/bench_accuracy.py: the C the CLI writes, compiled with gcc
(C99) and g++ (C++11, every file as C++) at -O2 -Wall -Wextra -Werror -pedantic, run on real
held-out digits, equals qexport.integer.run.run_integer at every node bit for bit (the hook dumps
each node's codes); VGG's and ResNet18's C uses the packed XNOR-popcount kernels.  The same C built
bare metal for a Cortex-M4 (arm-none-eabi-gcc -O2, tests/qemu_support.py; VGG and ResNet18 fit
the 4 MiB flash with their packed binary weights, TWN's 512 KiB arena the 4 MiB RAM) runs under
QEMU mps2-an386 and prints each digit's output codes and the sum of every node's codes, all equal
to run_integer, and main's return value 3 is QEMU's exit status.

The graph run_integer executes is the one the CLI generated its C from (captured in the CLI's
process); expected values come from run_integer (numpy int64), never from the C text.  Digits per
network (held-out, spread over the set): LeNet 16, MobileNetV1 and TWN 8, VGG and ResNet18 4 on
the host (their numpy graphs cost about a second per digit); under QEMU the first 16, 4, 4, 2, 2
of them (TWN takes about 12 s of emulation per digit, MobileNetV1 5 s); calibration digits as few
as keep the file's runtime modest (the activation ranges differ from bench_accuracy's 256, which
does not matter for bit-exactness)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_csource import MAIN

from cheader_support import GCC, GXX, compile_c
from conftest import FIXTURES
from qemu_support import images_header, run_on_cortex_m4
from qexport.integer.run import run_integer

sys.path.insert(0, str(FIXTURES))
import trained  # noqa: E402

# arch -> (held-out digits on the host, of which under QEMU, training digits to calibrate on)
SAMPLES = {"lenet": (16, 16, 64), "mobilenet_v1": (8, 4, 64), "twn_nin_gc": (8, 4, 32),
           "vgg_cifar10_binary": (4, 2, 8), "resnet18_bnn": (4, 2, 8)}  # fmt: skip
assert set(SAMPLES) == set(trained.ARCHS)


def _cli_csource(arch: str, folder: Path):
    """Run `qexport csource` (in this process, click's runner) on the fixture; (the folder it wrote,
    the IntGraph it generated the C from)."""
    import qexport.csource

    _, _, n_cal = SAMPLES[arch]
    images, labels = trained.train_digits(arch)
    np.savez(folder / "cal.npz", images=images[:n_cal], labels=labels[:n_cal])
    out, graphs, generate = folder / "c", [], qexport.csource.generate
    argv = ["csource", str(trained.checkpoint(arch, folder)), *trained.PLANS[arch], "--calibrate",
            str(folder / "cal.npz"), "--calibration-samples", str(n_cal), "-o", str(out), "--name", "net"]  # fmt: skip
    from qexport.cli import cli

    with pytest.MonkeyPatch.context() as mp:  # the command imports generate when it runs
        mp.setattr(qexport.csource, "generate", lambda ig, name: graphs.append(ig) or generate(ig, name))
        res = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["net.h", "net_inference.c", "net_inference.h"]
    (ig,) = graphs
    return out, ig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """arch -> (C folder, IntGraph, held-out digits, run_integer's codes on them), made once."""
    cache = {}

    def get(arch):
        if arch not in cache:
            out, ig = _cli_csource(arch, tmp_path_factory.mktemp(arch))
            images, _ = trained.held_out(arch)
            x = images[np.linspace(0, len(images) - 1, SAMPLES[arch][0]).round().astype(int)]
            x = x[:, None] if x.ndim == 3 else x  # LeNet's digits: one channel
            cache[arch] = out, ig, x, run_integer(ig, x)
        return cache[arch]

    return get


def _host_build_and_run(src: Path, x: np.ndarray, folder: Path, tool: str, opt: str) -> bytes:
    """The CLI's files + test_csource's dumping main, built by `tool`, run on `x`: its stdout."""
    folder.mkdir()
    for f in src.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "main.c").write_text(MAIN.replace("UNAME", "NET").replace("NAME", "net"))
    flags = [*GCC] if tool == "gcc" else [*GXX, "-pedantic", "-x", "c++"]
    compile_c([*flags, opt, "-o", "prog", "main.c", "net_inference.c"], folder, tool)
    (folder / "images.bin").write_bytes(np.ascontiguousarray(x, np.uint8).tobytes())
    res = subprocess.run([str(folder / "prog"), "images.bin"], cwd=folder, capture_output=True, timeout=300)
    assert res.returncode == 0 and res.stderr == b"", (res.returncode, res.stderr)
    return res.stdout


def _expected_dump(ig, want: dict, n: int) -> list[tuple[str, bytes]]:
    """What MAIN prints when every node's codes are run_integer's: per digit, per node the record
    "index hex(name) size\n" + the codes, then the output record; as (which, bytes) pairs."""
    out = []
    for i in range(n):
        for k, node in [*enumerate(ig.nodes), (-1, None)]:
            name, codes = ("output", want[ig.output][i]) if node is None else (node.name, want[node.name][i])
            codes = np.ascontiguousarray(codes, np.uint8 if node is not None else np.int32).ravel()  # output: int32
            record = f"{k} {name.encode().hex()} {codes.nbytes}\n".encode() + codes.tobytes()
            out.append((f"digit {i}, node {name}", record))
    return out


@pytest.mark.parametrize("arch", trained.ARCHS)
def test_trained_c_equals_run_integer_at_every_node_gcc_and_gxx(exported, arch, tmp_path):
    out, ig, x, want = exported(arch)
    for node in ig.nodes:  # codes fit the uint8 the C stores (else the comparison below would wrap)
        assert want[node.name].min() >= 0 and want[node.name].max() <= 255, node.name
    packed = "static void qx_pack_bits(" in (out / "net_inference.c").read_text()
    assert packed == (arch in ("vgg_cifar10_binary", "resnet18_bnn"))  # their XNOR-popcount layers are run here
    with ThreadPoolExecutor(2) as pool:  # the two builds side by side
        runs = {tool: pool.submit(_host_build_and_run, out, x, tmp_path / tool, tool, "-O2") for tool in ("gcc", "g++")}
        records = _expected_dump(ig, want, len(x))
        expected = b"".join(r for _, r in records)
        for tool, run in runs.items():
            got = run.result()
            if got != expected:  # name the first record that differs
                at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
                ends = np.cumsum([len(r) for _, r in records])
                which = records[min(int(np.searchsorted(ends, at, side="right")), len(records) - 1)][0]
                pytest.fail(f"{arch} {tool}: the C's dump differs from run_integer's at {which} "
                            f"(byte {at}; {len(got)} bytes printed, {len(expected)} expected)")  # fmt: skip


QEMU_MAIN = r"""
#include <stdio.h>
#include "net_inference.h"
#include "digits.h"
static unsigned long sums[NET_NODE_COUNT];
static void node_sum(int node, const char *name, const uint8_t *codes, size_t n)
{
    size_t i;
    unsigned long s = 0;
    (void)name;
    for (i = 0; i < n; i++)
        s += codes[i];
    sums[node] = s;
}
int main(void)
{
    static int32_t out[NET_OUTPUT_SIZE];
    int i, j;
    net_set_hook(node_sum);
    for (i = 0; i < DIGITS; i++) {
        if (net_run(digits[i], out) != 0)
            return 1;
        printf("digit %d:", i);
        for (j = 0; j < NET_OUTPUT_SIZE; j++)
            printf(" %ld", (long)out[j]);
        printf(" sums:");
        for (j = 0; j < NET_NODE_COUNT; j++)
            printf(" %lu", sums[j]);
        printf("\n");
    }
    return 3; /* checked: the exit status reaches the host */
}
"""


@pytest.mark.parametrize("arch", trained.ARCHS)
def test_trained_c_on_a_cortex_m4_in_qemu(exported, arch, tmp_path):
    out, ig, x, want = exported(arch)
    n = SAMPLES[arch][1]
    for f in out.iterdir():  # the CLI's files, as written
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "digits.h").write_text(images_header(x[:n], "digits"))
    (tmp_path / "main.c").write_text(QEMU_MAIN)
    res = run_on_cortex_m4(tmp_path, ["net_inference.c", "main.c"], timeout=600)
    assert res.returncode == 3, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    expected = []
    for i in range(n):
        codes = " ".join(map(str, want[ig.output][i].ravel().tolist()))
        sums = " ".join(str(int(want[node.name][i].astype(np.int64).sum())) for node in ig.nodes)
        expected.append(f"digit {i}: {codes} sums: {sums}")
    assert res.stdout.splitlines() == expected
