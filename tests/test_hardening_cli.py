"""Hardening of the command line as users run it (issue 10, README "Safety"): every command in a real
subprocess against bad input, bad output places, a full disk and signals mid-export, and every
command run twice giving byte-identical outputs.

Expectations everywhere: exit 1 (2 for usage errors), one stderr line `Error: <file>: <problem>`,
no traceback without --debug, no partial output and no temporary file left, a previous output
never clobbered, and no code from an input ever run.  Input-side unit checks (every truncation
point, fuzzing, dtypes) are in test_hardening_inputs.py; cifar-bmp's own bad input in test_cifar.py.

Two things need care because the tests run as root, which mode bits do not stop: "unreadable" and
"read-only" run the CLI with CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH taken out of its bounding set
(`prctl(PR_CAPBSET_DROP)` before exec), and "full disk" is a 64 KiB tmpfs mounted for the test
(where mounting is not allowed, RLIMIT_FSIZE makes writes fail instead).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_data import make_cifar10
from conftest import LENET, run_cli
from tools import unavailable

TMP_MARK = ".qexport-tmp-"
PREVIOUS = b"previous good output\n"

# command -> (argv before MODEL, output name, output kind).  inspect's output is its --report.
COMMANDS = {
    "mat": (("mat",), "m.mat", "file"),
    "txt": (("txt",), "m_txt", "dir"),
    "npy": (("npy",), "m_npy", "dir"),
    "npz": (("npy", "--npz"), "m.npz", "file"),
    "h5": (("h5",), "m.h5", "file"),
    "cheader": (("cheader",), "m.h", "file"),
    "onnx": (("onnx",), "m.onnx", "file"),
    "mem": (("mem",), "m_mem", "dir"),
    "golden": (("golden", "-n", "2"), "m_golden", "dir"),
    "inspect": (("inspect",), "report.json", "file"),
}
FILE_COMMANDS = [c for c, (_, _, kind) in COMMANDS.items() if kind == "file"]
DIR_COMMANDS = [c for c, (_, _, kind) in COMMANDS.items() if kind == "dir"]
# A file every folder writer writes for LeNet: a previous output holding only it may be replaced.
OWN_FILE = {"txt": "c1.weight.txt", "npy": "manifest.json", "mem": "manifest.json", "golden": "manifest.json"}


def cli_args(cmd: str, model, out, *extra) -> list[str]:
    base, _, _ = COMMANDS[cmd]
    return [*base, *extra, str(model), "--report" if cmd == "inspect" else "-o", str(out)]


def error_line(r: subprocess.CompletedProcess, *expected: str, code: int = 1) -> str:
    """The one `Error:` line of a failed run; asserts exit code, no traceback, every `expected` in it."""
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Relative path -> bytes (None for a folder) of everything under `folder`."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if TMP_MARK in p.name]
    assert not left, left


def previous_output(cmd: str, out: Path) -> dict:
    """Put a 'previous good output' at `out` (a file, or a folder holding one file the export
    writes, so replacing it would be allowed); returns its tree for comparison."""
    if COMMANDS[cmd][2] == "dir":
        out.mkdir()
        (out / OWN_FILE[cmd]).write_bytes(PREVIOUS)
    else:
        out.write_bytes(PREVIOUS)
    return tree(out.parent)


# ------------------------------------------------------------------------------------------------
# Running the CLI with a changed process: fewer capabilities, a file size limit

EXEC_CLI = "import os, sys; os.execv(sys.executable, [sys.executable, '-m', 'qexport.cli', *sys.argv[1:]])"

# Root ignores mode bits through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.  Dropped from the bounding
# set, they are not in the permitted set of the program exec'd next (the inheritable set is empty).
DROP_DAC = """
import ctypes, os
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP
            raise SystemExit("prctl(PR_CAPBSET_DROP) failed: errno %d" % ctypes.get_errno())
"""


def fsize_limit(limit: int) -> str:
    return (f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")  # fmt: skip


def run_cli_after(setup: str, *args, **kw) -> subprocess.CompletedProcess:
    """run_cli, with `setup` (Python) run in the process just before it execs the CLI."""
    return subprocess.run([sys.executable, "-c", setup + "\n" + EXEC_CLI, *map(str, args)],
                          capture_output=True, text=True, timeout=600, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def no_dac(tmp_path_factory) -> str:
    """Setup code under which mode bits bind the CLI even for root; where that cannot be had, the
    test skips (fails under CI)."""
    d = tmp_path_factory.mktemp("dac")
    probe = d / "probe"
    probe.write_text("x")
    probe.chmod(0)
    reader = "import sys; open(sys.argv[1])"
    code = DROP_DAC + "import sys; os.execv(sys.executable, [sys.executable, '-c', %r, *sys.argv[1:]])" % reader
    r = subprocess.run([sys.executable, "-c", code, str(probe)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "PermissionError" in r.stderr:
        return DROP_DAC
    unavailable("this container cannot take CAP_DAC_OVERRIDE away from a child process, and with it root "
                f"reads and writes whatever the mode bits say (probe: {r.stderr.strip()[-200:] or 'read it'})")


# ------------------------------------------------------------------------------------------------
# Bad input, every command

class Payload:
    """Unpickled without restrictions, it runs `touch MARKER` (the classic __reduce__ exploit)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict:
    """Bad MODEL files, and the marker a code-execution payload would create."""
    d = tmp_path_factory.mktemp("bad")
    marker = d / "MARKER-code-ran"
    lenet = torch.load(LENET, weights_only=True)
    files = {"missing": d / "missing.pth", "directory": d / "folder.pth", "fifo": d / "fifo.pth",
             "empty": d / "empty.pth", "random": d / "random.pth", "payload": d / "payload.pth",
             "module": d / "module.pth", "nonfinite": d / "nonfinite.pth"}  # fmt: skip
    files["directory"].mkdir()
    os.mkfifo(files["fifo"])
    files["empty"].touch()
    rng = np.random.default_rng(1)
    files["random"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    torch.save({**lenet, "c1.weight": Payload(marker)}, files["payload"])
    from qexport.models import build

    torch.save(build("lenet", {}), files["module"])  # a whole pickled nn.Module
    state = {k: v.clone() for k, v in lenet.items()}
    state["c3.weight"][2, 1, 0, 3] = float("nan")
    state["c3.weight"][5, 0, 4, 4] = float("-inf")
    torch.save(state, files["nonfinite"])
    return {"files": files, "marker": marker}


BAD_INPUT = {  # kind -> what the error line must say besides the file name
    "missing": ["no such file"],
    "directory": ["is a directory"],
    "fifo": ["is not a regular file"],
    "empty": ["file is empty"],
    "random": ["not a PyTorch checkpoint"],
    "payload": ["refused", "would execute pickled code", "posix.system"],
    "module": ["refused", "would execute pickled code", "LeNet"],
    "nonfinite": ["'c3.weight' has 2 non-finite value(s)"],
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUT))
@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_bad_model_file(cmd, kind, bad, tmp_path):
    model = bad["files"][kind]
    out = tmp_path / COMMANDS[cmd][1]
    r = run_cli(*cli_args(cmd, model, out))
    error_line(r, model.name, *BAD_INPUT[kind])
    assert not bad["marker"].exists(), "a checkpoint ran code"
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_debug_shows_the_traceback(bad, tmp_path):
    """The one-line errors above are a choice, not a lost traceback: --debug shows it."""
    r = run_cli("--debug", "mat", bad["files"]["nonfinite"], "-o", tmp_path / "m.mat")
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert "InputError: " in r.stderr and "'c3.weight' has 2 non-finite value(s)" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_payload_is_real(tmp_path):
    """The payload the CLI refuses does run code when unpickled without restrictions."""
    torch.save({"w": Payload(tmp_path / "ran")}, tmp_path / "p.pth")
    torch.load(tmp_path / "p.pth", weights_only=False)
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("container", ["legacy", "plain_pickle"])
def test_payload_in_other_containers(container, tmp_path):
    import pickle

    marker = tmp_path / "ran"
    path = tmp_path / "p.pth"
    if container == "legacy":
        torch.save({"c1.weight": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps({"c1.weight": Payload(marker)}, protocol=2))
    error_line(run_cli("mat", path, "-o", tmp_path / "m.mat"), "p.pth", "refused", "posix.system")
    assert not marker.exists() and not (tmp_path / "m.mat").exists()


@pytest.mark.parametrize("cmd", sorted(COMMANDS) + ["cifar-bmp"])
def test_unreadable_input(cmd, no_dac, cifar_src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    if cmd == "cifar-bmp":
        src = shutil.copytree(cifar_src, tmp_path / cifar_src.name)
        (src / "data_batch_2").chmod(0)
        r = run_cli_after(no_dac, "cifar-bmp", src, "-o", out / "images")
        assert "permission denied" in error_line(r, "data_batch_2").lower()
    else:
        model = tmp_path / "secret.pth"
        shutil.copy(LENET, model)
        model.chmod(0)
        r = run_cli_after(no_dac, *cli_args(cmd, model, out / COMMANDS[cmd][1]))
        error_line(r, "secret.pth", "permission denied")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_arch_forced_onto_the_wrong_model(cmd, tmp_path):
    r = run_cli(*cli_args(cmd, LENET, tmp_path / COMMANDS[cmd][1], "--arch", "vgg_cifar10_binary"))
    error_line(r, "lenet_digits.pth", "does not fit --arch vgg_cifar10_binary", "missing keys: features.0.weight")
    assert list(tmp_path.iterdir()) == []


def test_unknown_arch_is_a_usage_error(tmp_path):
    error_line(run_cli("txt", "--arch", "lenet5", LENET, "-o", tmp_path / "t"), "unknown reader 'lenet5'", code=2)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Usage errors: exit 2

CONFLICTS = {  # cmd -> (extra options, output name or None for the default one, expected text)
    "mat": (("--zero-point", "truncate", "--bits", "1"), None, "--zero-point truncate applies to affine plans"),
    "txt": (("--plan", "seed", "--scale-shift", "c1=3,11", "--per-channel"), None, "one scale per channel; use --per-tensor"),
    "npy": (("--compress",), None, "--compress applies to --npz"),
    "npz": (("--bits", "2", "--zero-point", "truncate"), None, "--zero-point truncate applies to affine plans"),
    "h5": (("--plan", "seed", "--only", "nothing*"), None, "--only nothing* matches no conv/linear layer"),
    "cheader": (("--split-source",), "m.c", "with --split-source, -o names the header"),
    "onnx": (("--opset", "13", "--bits", "12"), None, "--opset 13"),
    "mem": (("--plan", "seed", "--zero-point", "truncate", "--per-channel"), None, "add --per-tensor"),
    "golden": (("--layer", "c*"), None, "--layer selects binary layers"),
    "inspect": (("--zero-point", "truncate", "--bits", "2"), None, "--zero-point truncate applies to affine plans"),
}


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_conflicting_options(cmd, tmp_path):
    extra, name, expected = CONFLICTS[cmd]
    r = run_cli(*cli_args(cmd, LENET, tmp_path / (name or COMMANDS[cmd][1]), *extra))
    error_line(r, expected, code=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cmd", sorted(COMMANDS) + ["cifar-bmp"])
def test_malformed_option_value(cmd, tmp_path):
    if cmd == "cifar-bmp":
        args = ["cifar-bmp", "--limit", "-1", tmp_path]
    else:
        args = cli_args(cmd, LENET, tmp_path / "o", "--bits", "17")
    r = run_cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '--")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Bad output places

@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_output_folder_is_a_regular_file(cmd, tmp_path):
    (tmp_path / "plain").write_bytes(PREVIOUS)
    r = run_cli(*cli_args(cmd, LENET, tmp_path / "plain" / COMMANDS[cmd][1]))
    error_line(r, "plain is not a folder")
    assert tree(tmp_path) == {"plain": PREVIOUS}


@pytest.mark.parametrize("cmd", sorted(COMMANDS) + ["cifar-bmp"])
def test_read_only_output_folder(cmd, no_dac, tmp_path, cifar_src):
    out = tmp_path / "ro"
    out.mkdir()
    target = out / (COMMANDS[cmd][1] if cmd in COMMANDS else "images")
    if cmd in COMMANDS:
        before = previous_output(cmd, target)
        args = cli_args(cmd, LENET, target)
    else:
        before = tree(out)
        args = ["cifar-bmp", cifar_src, "-o", target]
    out.chmod(0o555)
    try:
        r = run_cli_after(no_dac, *args)
    finally:
        out.chmod(0o755)
    error_line(r, str(target.name), "permission denied")
    assert tree(out) == before


@pytest.mark.parametrize("cmd", FILE_COMMANDS)
def test_output_path_is_an_existing_folder(cmd, tmp_path):
    target = tmp_path / COMMANDS[cmd][1]
    target.mkdir()
    (target / "keep.txt").write_bytes(PREVIOUS)
    r = run_cli(*cli_args(cmd, LENET, target))
    error_line(r, COMMANDS[cmd][1], "is a directory")
    assert tree(tmp_path) == {COMMANDS[cmd][1]: None, f"{COMMANDS[cmd][1]}/keep.txt": PREVIOUS}


@pytest.mark.parametrize("cmd", FILE_COMMANDS)
def test_output_path_is_a_fifo(cmd, tmp_path):
    """A rename would replace the FIFO (or /dev/null, as root) by a regular file."""
    target = tmp_path / COMMANDS[cmd][1]
    os.mkfifo(target)
    error_line(run_cli(*cli_args(cmd, LENET, target)), COMMANDS[cmd][1], "not a regular file")
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("cmd", DIR_COMMANDS)
def test_folder_of_other_files_is_refused_not_replaced(cmd, tmp_path):
    """A folder writer replaces its own previous output, and refuses (never deletes) a folder
    holding anything else, e.g. a project folder given to -o by mistake."""
    own = tmp_path / "own"
    own.mkdir()
    (own / OWN_FILE[cmd]).write_bytes(PREVIOUS)  # what a previous run of the same export wrote...
    r = run_cli(*cli_args(cmd, LENET, own))
    assert r.returncode == 0, r.stderr  # ...is replaced
    replaced = tree(own)
    assert len(replaced) > 1 and replaced[OWN_FILE[cmd]] not in (None, PREVIOUS)

    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.c").write_bytes(PREVIOUS)
    (project / OWN_FILE[cmd]).write_bytes(PREVIOUS)
    before = tree(project)
    error_line(run_cli(*cli_args(cmd, LENET, project)), "project", "holds src", "choose another -o")
    assert tree(project) == before
    no_temporaries(tmp_path)


# ------------------------------------------------------------------------------------------------
# A full disk

class SmallDisk:
    """`path`: a folder where writes fail for lack of room.  A 64 KiB tmpfs filled up to `free`
    bytes when this process may mount one (ENOSPC, the real thing); otherwise a plain folder, and
    the CLI runs under RLIMIT_FSIZE = `free` (EFBIG), which needs no privilege."""

    def __init__(self, root: Path):
        self.path = root / "disk"
        self.path.mkdir()
        self.tmpfs = False
        if not os.environ.get("QEXPORT_TEST_NO_MOUNT"):  # set it to exercise the fallback
            try:
                mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(self.path)],
                                       capture_output=True, text=True, timeout=60)  # fmt: skip
                self.tmpfs = mount.returncode == 0
            except OSError:  # no mount(8)
                pass
        self.free = None

    def fill(self, free: int) -> None:
        """Fill the disk but `free` bytes (a multiple of the page size); call after creating outputs."""
        self.free = free
        if not self.tmpfs:
            return
        fd = os.open(self.path / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    os.write(fd, b"\0" * 4096)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
            size = os.fstat(fd).st_size // 4096 * 4096
            os.ftruncate(fd, max(0, size - free))
        finally:
            os.close(fd)

    def run(self, *args) -> subprocess.CompletedProcess:
        if self.tmpfs:
            return run_cli(*args)
        return run_cli_after(fsize_limit(self.free), *args)

    @property
    def problem(self) -> str:
        return "no space left on device" if self.tmpfs else "File too large"

    def listing(self) -> dict:
        t = tree(self.path)
        t.pop(".filler", None)
        return t

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    disk = SmallDisk(tmp_path)
    yield disk
    disk.close()


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_full_disk(cmd, small_disk):
    target = small_disk.path / COMMANDS[cmd][1]
    previous_output(cmd, target)
    # One page left, so the write fails part-way (the 2 KB report of inspect fits in one: none left).
    small_disk.fill(0 if cmd == "inspect" else 4096)
    before = small_disk.listing()
    r = small_disk.run(*cli_args(cmd, LENET, target))
    error_line(r, COMMANDS[cmd][1], small_disk.problem)
    assert small_disk.listing() == before  # the previous output is intact, no temporary file left


def test_full_disk_cifar(small_disk, tmp_path):
    if not small_disk.tmpfs:
        unavailable("needs a real small filesystem (mounting a tmpfs is not allowed here): RLIMIT_FSIZE "
                    "limits one file's size, and each CIFAR image is smaller than any useful limit")  # fmt: skip
    made = make_cifar10(tmp_path / "src", batch_sizes=(10,) * 5, test_size=10)
    out = small_disk.path / "images"
    small_disk.fill(8 * 4096)
    r = run_cli("cifar-bmp", made.root, "-o", out)
    error_line(r, "images", "no space left on device")
    files = tree(out)
    assert files  # some images were written before the disk filled up...
    for rel, raw in files.items():  # ...each of them complete, and no staging folder is left
        assert rel == "train" or (rel.startswith("train/") and raw is not None and len(raw) == 3126), rel


# ------------------------------------------------------------------------------------------------
# Signals mid-export

@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> Path:
    """A generic checkpoint big enough that writing it takes seconds (3 M float weights)."""
    gen = torch.Generator().manual_seed(3)
    path = tmp_path_factory.mktemp("big") / "big.pth"
    torch.save({"big.weight": torch.randn(2000, 1500, generator=gen),
                "small.weight": torch.randn(4, 4, generator=gen)}, path)  # fmt: skip
    return path


def _writing(folder: Path) -> bool:
    """A temporary output in `folder` already holds data."""
    for p in folder.iterdir():
        if TMP_MARK in p.name and (p.stat().st_size > 0 if p.is_file() else any(p.iterdir())):
            return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("cmd", ["cheader", "txt"])
def test_signal_mid_export(cmd, sig, big_model, tmp_path):
    target = tmp_path / COMMANDS[cmd][1]
    if cmd == "txt":
        target.mkdir()
        (target / "big.weight.txt").write_bytes(PREVIOUS)  # a previous output of this export
    else:
        target.write_bytes(PREVIOUS)
    before = tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "qexport.cli", *cli_args(cmd, big_model, target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _writing(tmp_path):
            assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it wrote anything"
            time.sleep(0.002)
        assert proc.poll() is None, "the export finished before the signal; make big_model larger"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert err.strip() == f"Error: interrupted by {sig.name}; no partial output was left"
    assert tree(tmp_path) == before  # previous output untouched, no temporary file


def test_sigint_mid_cifar_run(tmp_path):
    """SIGTERM is in test_cifar.py; SIGINT (Ctrl-C) the same: only complete images are left."""
    made = make_cifar10(tmp_path / "src", batch_sizes=(2000,) * 5, test_size=10)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "qexport.cli", "cifar-bmp", str(made.root), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((out / "train").is_dir() and any((out / "train").glob("*.bmp"))):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1 and err.strip() == "Error: interrupted by SIGINT; no partial output was left", err
    files = tree(out)
    assert 0 < len(files) - 1 < 10010  # the folder "train" and some, not all, images
    assert all(rel == "train" or len(raw) == 3126 for rel, raw in files.items())


def test_recorded_signal_stops_every_commit(tmp_path, monkeypatch):
    """C code can swallow the KeyboardInterrupt of a signal (numpy.char.mod does): the signal the
    CLI recorded still stops the rename into place, for files, folders and CIFAR images."""
    from qexport import cifar, interrupts
    from qexport.atomic import atomic_dir, atomic_file

    monkeypatch.setattr(interrupts, "received", [signal.SIGTERM])
    (tmp_path / "f").write_bytes(PREVIOUS)
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "f") as fh:
            fh.write(b"new")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_bytes(b"new")
    folder = cifar.conversion._Dir(tmp_path / "img")
    with pytest.raises(KeyboardInterrupt):
        folder.write("0_0.bmp", b"new")
    folder.close()
    assert tree(tmp_path) == {"f": PREVIOUS, "img": None}


# ------------------------------------------------------------------------------------------------
# Determinism: every command, twice, in separate processes

@pytest.fixture(scope="module")
def cifar_src(tmp_path_factory) -> Path:
    return make_cifar10(tmp_path_factory.mktemp("c10"), batch_sizes=(12,) * 5, test_size=12).root


DETERMINISM = {  # id -> (model: "lenet" / an architecture / "cifar", argv with {m} for MODEL)
    "mat": ("lenet", ["mat", "{m}", "-o", "out.mat"]),
    "txt": ("twn_nin_gc", ["txt", "--plan", "seed", "--per-row", "--hex", "{m}", "-o", "out"]),
    "npy": ("lenet", ["npy", "{m}", "-o", "out"]),
    "npz": ("lenet", ["npy", "--npz", "--compress", "{m}", "-o", "out.npz"]),
    "h5": ("lenet", ["h5", "--compress", "{m}", "-o", "out.h5"]),
    "cheader": ("lenet", ["cheader", "--bits", "8", "{m}", "-o", "out.h"]),
    "cheader-split-source": ("vgg_cifar10_binary", ["cheader", "--plan", "seed", "--split-source", "{m}", "-o", "out.h"]),
    "onnx": ("lenet", ["onnx", "{m}", "-o", "out.onnx"]),
    "mem": ("twn_nin_gc", ["mem", "--plan", "seed", "{m}", "-o", "out"]),
    "coe": ("lenet", ["mem", "--format", "coe", "{m}", "-o", "out"]),
    "mif": ("lenet", ["mem", "--format", "mif", "--mem-width", "16", "{m}", "-o", "out"]),
    "golden": ("lenet", ["golden", "-n", "3", "--format", "mem", "{m}", "-o", "out"]),
    "cifar-bmp": ("cifar", ["cifar-bmp", "{m}", "-o", "out", "--labels-csv"]),
    "cifar-png": ("cifar", ["cifar-bmp", "{m}", "-o", "out", "--format", "png", "--layout", "class-dirs"]),
    "inspect-report": ("lenet", ["inspect", "--plan", "seed", "-v", "{m}", "--report", "out.json"]),
}


@pytest.mark.parametrize("case", sorted(DETERMINISM))
def test_deterministic_across_runs(case, checkpoint, cifar_src, tmp_path):
    """Two runs in different folders, with different hash seeds: byte-identical outputs (and
    stdout/stderr), with no trace of the folder they ran in."""
    source, argv = DETERMINISM[case]
    results = []
    for run, seed in (("first", "0"), ("second", "12345")):
        cwd = tmp_path / run / "work"
        cwd.mkdir(parents=True)
        if source == "cifar":
            shutil.copytree(cifar_src, cwd / cifar_src.name)
            model = cifar_src.name
        else:
            shutil.copy(LENET if source == "lenet" else checkpoint(source), cwd / "model.pth")
            model = "model.pth"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = run_cli(*[a.replace("{m}", model) for a in argv], cwd=cwd, env=env)
        assert r.returncode == 0, r.stderr
        outputs = {k: v for k, v in tree(cwd).items() if k.startswith("out")}
        assert outputs, "the command wrote nothing"
        results.append((outputs, r.stdout, r.stderr))
        blob = b"".join(v for v in outputs.values() if v) + (r.stdout + r.stderr).encode()
        assert str(tmp_path).encode() not in blob  # no absolute path of where it ran
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------------
# tflite (README "TFLite"): bad checkpoint, bad calibration data, a network with no int8 form

DIGITS = Path(__file__).resolve().parent.parent / "fixtures" / "digits_test.npz"


def tflite_args(model, out, calibration=DIGITS) -> list[str]:
    return ["tflite", "--bits", "8", str(model), "--calibrate", str(calibration), "--calibration-samples", "16",
            "-o", str(out)]  # fmt: skip


@pytest.mark.parametrize("kind", ["missing", "random", "payload", "nonfinite"])
def test_tflite_bad_model_file(kind, bad, tmp_path):
    model = bad["files"][kind]
    error_line(run_cli(*tflite_args(model, tmp_path / "m.tflite")), model.name, *BAD_INPUT[kind])
    assert not bad["marker"].exists(), "a checkpoint ran code"
    assert list(tmp_path.iterdir()) == []


def _bad_calibration(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    d = tmp_path / "cal"
    d.mkdir()
    (d / "random.npy").write_bytes(np.random.default_rng(2).integers(0, 256, 100, dtype=np.uint8).tobytes())
    (d / "empty.npz").touch()
    np.save(d / "flat.npy", np.zeros((4, 7), np.uint8))
    np.save(d / "float.npy", np.full((4, 28, 28), np.nan))
    return {"missing": (d / "missing.npz", "no such file"), "random": (d / "random.npy", "unknown data format"),
            "empty": (d / "empty.npz", "unknown data format"), "flat": (d / "flat.npy", "2-D array"),
            "float": (d / "float.npy", "must be uint8")}  # fmt: skip


@pytest.mark.parametrize("kind", ["missing", "random", "empty", "flat", "float"])
def test_tflite_bad_calibration_data(kind, tmp_path):
    path, says = _bad_calibration(tmp_path)[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    error_line(run_cli(*tflite_args(LENET, out_dir / "m.tflite", path)), path.name, says)
    assert list(out_dir.iterdir()) == []


def test_tflite_refuses_a_binarized_network_naming_the_node(tmp_path):
    from conftest import make_state

    torch.save(make_state("resnet18_bnn", {"num_classes": 10}), tmp_path / "r.pth")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    line = error_line(run_cli("tflite", "--plan", "seed", tmp_path / "r.pth", "--calibrate", tmp_path / "cal.npy",
                              "-o", out / "r.tflite"))  # fmt: skip
    assert line.startswith("Error: node ") and "binarized activations" in line and "no int8 TFLite form" in line, line
    assert list(out.iterdir()) == []
