"""`qexport eval` and `qexport golden --calibrate` through the CLI on every data format qexport.data
reads, holding the same images in the same order (README "Integer inference"): LeNet (the bundled
fixture; 60 held-out digits, 6 per class, sorted by label so class folders keep the order) as
.npy, .npz, a flat BMP folder with cifar-bmp names, PNG class folders, MNIST idx raw and .gz; a
small TWN (3 x 32 x 32, --bits 2 --only '*': sign layers amplify any pixel difference) as .npy,
.npz, BMP / PNG folders, one CIFAR-10 batch pickle, a cifar-10-batches-py folder and its .tar.gz.
Every format's eval output must equal the others' (the .npy without labels: the same but
'n/a' accuracies) and every golden file must be byte-identical (the manifest up to the name of
the calibration source).  Files are written by numpy, Pillow, gzip, struct (idx from the format's
definition), tests/cifar_data.py's Python 2 pickler and tarfile, never by qexport.

Bad data through the CLI (wrong shape, mixed image sizes, label out of range, truncated files) is
one line naming the file, exit 1, nothing written; one case runs in a real subprocess, the rest
in process (test_graph_end_to_end.in_process: the same click command and error conversion)."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_data import cifar10_batch, make_cifar10, make_tar, py2_pickle
from conftest import LENET, make_state, run_cli
from test_graph_end_to_end import in_process, one_error

TWN = ("twn_nin_gc", {"cfg": (16, 16, 16, 32, 32, 32, 64, 64)})


def idx_images(images: np.ndarray) -> bytes:  # N x H x W
    return struct.pack(">IIII", 0x803, *images.shape) + images.tobytes()


def idx_labels(labels) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + np.asarray(labels, np.uint8).tobytes()


def image_file(path, chw: np.ndarray) -> None:
    Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)).save(path)


def write_formats(root, images: np.ndarray, labels: np.ndarray) -> dict:
    """{format: path} of the same labelled images (N x C x H x W, sorted by label)."""
    out = {}
    np.save(root / "images.npy", images)
    out["npy"] = root / "images.npy"
    np.savez(root / "images.npz", images=images, labels=labels)
    out["npz"] = root / "images.npz"
    (root / "bmp").mkdir()
    for i, (img, label) in enumerate(zip(images, labels)):
        image_file(root / "bmp" / f"{label}_{i}.bmp", img)
    out["bmp-cifar-names"] = root / "bmp"
    for i, (img, label) in enumerate(zip(images, labels)):
        (root / "classes" / f"{label}").mkdir(parents=True, exist_ok=True)
        image_file(root / "classes" / f"{label}" / f"{i:03d}.png", img)
    out["png-class-folders"] = root / "classes"
    if images.shape[1] == 1:
        (root / "raw").mkdir()
        (root / "raw" / "t10k-images-idx3-ubyte").write_bytes(idx_images(images[:, 0]))
        (root / "raw" / "t10k-labels-idx1-ubyte").write_bytes(idx_labels(labels))
        out["mnist-idx"] = root / "raw" / "t10k-images-idx3-ubyte"
        (root / "gz").mkdir()
        (root / "gz" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images(images[:, 0]), mtime=0))
        (root / "gz" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(labels), mtime=0))
        out["mnist-idx-gz"] = root / "gz" / "t10k-images-idx3-ubyte.gz"
    else:
        made = make_cifar10(root / "cifar", batch_sizes=(1, 1, 1, 1, 1), test_size=1)
        (made.root / "test_batch").write_bytes(py2_pickle(cifar10_batch(images.reshape(len(images), -1), labels,
                                                                         "testing batch 1 of 1")))  # fmt: skip
        out["cifar-pickle"] = made.root / "test_batch"
        out["cifar-folder"] = made.root
        out["cifar-tar-gz"] = make_tar(made.root, root / "cifar-10-python.tar.gz")
    return out


def sorted_sample(images, labels, per_class: int):
    pick = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])  # by label
    return np.ascontiguousarray(images[pick]), labels[pick].astype(np.int64)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    digits = np.load(LENET.parent / "digits_test.npz")
    lenet = sorted_sample(digits["images"][:, None], digits["labels"], 6)
    rng = np.random.default_rng(21)
    cifar = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8), np.repeat(np.arange(10), 2)
    torch.save(make_state(*TWN), root / "twn.pth")
    out = {}
    for name, ckpt, (x, y), plan in (("lenet", LENET, lenet, ["--bits", "8"]),
                                     ("twn", root / "twn.pth", cifar, ["--bits", "2", "--only", "*"])):  # fmt: skip
        (root / name).mkdir()
        np.savez(root / name / "inputs.npz", images=x[:5], labels=y[:5])
        out[name] = {"ckpt": ckpt, "plan": plan, "formats": write_formats(root / name, x, y),
                     "inputs": root / name / "inputs.npz", "root": root / name}  # fmt: skip
    return out


def digest(folder, source_name: str) -> dict:
    """sha256 of every file; the manifest's mentions of the calibration source's name replaced."""
    out = {}
    for p in sorted(folder.iterdir()):
        raw = p.read_bytes()
        if p.name == "manifest.json":
            raw = raw.replace(source_name.encode(), b"DATA")
        out[p.name] = hashlib.sha256(raw).hexdigest()
    return out


@pytest.mark.parametrize("net", ["lenet", "twn"])
def test_eval_and_golden_are_the_same_whatever_the_format(networks, net, tmp_path):
    n = networks[net]
    evals, goldens = {}, {}
    for fmt, path in n["formats"].items():
        r = in_process("eval", n["ckpt"], *n["plan"], "--data", path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (fmt, r.stderr)
        evals[fmt] = r.stdout
        out = tmp_path / fmt
        r = in_process("golden", n["ckpt"], *n["plan"], "-i", n["inputs"], "--calibrate", path, "-o", out)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (fmt, r.stderr)
        goldens[fmt] = digest(out, path.name)
    labelled = evals.pop("npy")
    reference = evals["npz"]
    assert "n/a" not in reference and reference.count(" %") == 3, reference
    for fmt, text in evals.items():
        assert text == reference, fmt
    lines = [line for line in reference.splitlines() if "%" not in line]
    assert [line for line in labelled.splitlines() if "n/a (no labels)" not in line] == lines
    assert labelled.count("n/a (no labels)") == 3
    assert len(goldens["npz"]) > 5
    for fmt, files in goldens.items():
        assert files == goldens["npz"], fmt


def test_bad_data_is_one_line_and_nothing_written(networks, tmp_path):
    lenet, twn = networks["lenet"], networks["twn"]
    x = np.load(lenet["formats"]["npz"])["images"]
    bad = {}
    bad["wrong shape"] = (lenet, twn["formats"]["npz"], "are 3 x 32 x 32")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i in range(3):
        image_file(mixed / f"{i}_{i}.bmp", x[i])
    image_file(mixed / "3_3.bmp", np.zeros((1, 20, 28), np.uint8))
    bad["mixed sizes"] = (lenet, mixed, "same size")
    (tmp_path / "range").mkdir()
    (tmp_path / "range" / "t10k-images-idx3-ubyte").write_bytes(idx_images(x[:3, 0]))
    (tmp_path / "range" / "t10k-labels-idx1-ubyte").write_bytes(idx_labels([1, 10, 2]))
    bad["label out of range"] = (lenet, tmp_path / "range" / "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte: label [1] = 10 is outside 0..9")
    np.savez(tmp_path / "negative.npz", images=x[:3], labels=np.array([0, -1, 2]))
    bad["negative label"] = (lenet, tmp_path / "negative.npz", "label [1] = -1")
    raw = lenet["formats"]["mnist-idx"].read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    bad["truncated idx"] = (lenet, tmp_path / "t10k-images-idx3-ubyte", "truncated")
    raw = lenet["formats"]["npy"].read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    bad["truncated npy"] = (lenet, tmp_path / "cut.npy", "cut.npy")
    raw = twn["formats"]["cifar-tar-gz"].read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(raw[: len(raw) // 2])
    bad["truncated tar.gz"] = (twn, tmp_path / "cut.tar.gz", "cut.tar.gz")
    raw = twn["formats"]["cifar-pickle"].read_bytes()
    (tmp_path / "test_batch").write_bytes(raw[: len(raw) - 5000])
    bad["truncated pickle"] = (twn, tmp_path / "test_batch", "test_batch")
    for k, (net, path, needle) in enumerate(bad.values()):
        report, out = tmp_path / f"report{k}.json", tmp_path / f"golden{k}"
        r = in_process("eval", net["ckpt"], *net["plan"], "--data", path, "--report", report)
        one_error(r, str(path.parent), needle)  # names the file (the labels beside it for MNIST)
        r = in_process("golden", net["ckpt"], *net["plan"], "-i", net["inputs"], "--calibrate", path, "-o", out)
        one_error(r, str(path.parent), needle)
        assert not report.exists() and not out.exists(), path
    # the real process: exit status and stderr as a user sees them
    r = run_cli("golden", lenet["ckpt"], "--bits", "8", "-i", lenet["inputs"], "--calibrate", mixed, "-o", tmp_path / "real")
    one_error(r, "3_3.bmp", "same size")
    assert not (tmp_path / "real").exists()
