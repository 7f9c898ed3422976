"""`qexport.data.load_data` (issue 15): calibration / evaluation images from .npy/.npz, image
folders, CIFAR pickles and MNIST idx files, and `parse_normalisation`.

Every input is written here by a writer qexport did not write: numpy (`np.save`, `np.savez`),
Pillow, `gzip`, `tarfile`, `pickle.dumps` at protocols 0-5, idx bytes packed with `struct` from the
format's definition, and tests/cifar_data.py's Python 2 cPickle transcription.  Expected arrays are
the ones written, rearranged with numpy in the test; never the loader's output.  (One test,
`test_cifar_bmp_output_reads_back`, deliberately feeds `qexport cifar-bmp`'s own output back in to
check the two agree on the file naming; its expected pixels still come from the fixture.)
"""

from __future__ import annotations

import gzip
import io
import zipfile
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cifar_data import make_cifar10, make_cifar100, make_tar
from qexport.data import Dataset, load_data, parse_normalisation
from qexport.errors import InputError, UnsafeInputError, UsageError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(15)


def pixels(*shape) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def fails(path, *, exc=InputError, name=None, **kw) -> str:
    """load_data raises `exc` with one line naming the file."""
    with pytest.raises(exc) as info:
        load_data(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    assert (name or Path(path).name) in msg, msg
    return msg


def check(ds: Dataset, images: np.ndarray, labels=None, classes=None) -> None:
    assert ds.images.dtype == np.uint8 and ds.images.flags.c_contiguous and ds.images.flags.writeable
    np.testing.assert_array_equal(ds.images, images, strict=True)
    if labels is None:
        assert ds.labels is None
    else:
        assert ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.labels, np.asarray(labels, np.int64))
    assert ds.classes == classes


# --------------------------------------------------------------------------- .npy / .npz


def test_npy_layouts(tmp_path):
    nchw = pixels(4, 3, 5, 6)
    np.save(tmp_path / "nchw.npy", nchw)
    np.save(tmp_path / "nhwc.npy", np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)))
    gray = pixels(4, 5, 6)
    np.save(tmp_path / "nhw.npy", gray)
    np.save(tmp_path / "nhw1.npy", gray[..., None])
    np.save(tmp_path / "fortran.npy", np.asfortranarray(nchw))
    check(load_data(tmp_path / "nchw.npy"), nchw)
    check(load_data(tmp_path / "nhwc.npy"), nchw)
    check(load_data(tmp_path / "fortran.npy"), nchw)
    check(load_data(tmp_path / "nhw.npy"), gray[:, None])
    check(load_data(tmp_path / "nhw1.npy"), gray[:, None])
    ds = load_data(tmp_path / "nchw.npy")
    assert ds.source == "nchw.npy" and ds.labels is None


def test_npz_keys_labels_and_source(tmp_path):
    images, labels = pixels(6, 1, 7, 7), np.array([3, 1, 4, 1, 5, 9])
    np.savez(tmp_path / "a.npz", images=images, labels=labels, extra=np.zeros(2))
    np.savez_compressed(tmp_path / "b.npz", x=images[:, 0], y=labels.astype(np.uint8))
    check(load_data(tmp_path / "a.npz"), images, labels)
    check(load_data(tmp_path / "b.npz"), images, labels)
    ds = load_data(str((tmp_path / "a.npz").resolve()))
    assert ds.source == "a.npz" and not os.path.isabs(ds.source)
    np.savez(tmp_path / "nolabels.npz", images=images)
    check(load_data(tmp_path / "nolabels.npz"), images)


def test_content_not_suffix_decides(tmp_path):
    images = pixels(2, 3, 4, 4)
    with open(tmp_path / "pixels.bin", "wb") as fh:
        np.save(fh, images)
    with open(tmp_path / "archive.npy", "wb") as fh:
        np.savez(fh, images=images, labels=np.array([0, 1]))
    check(load_data(tmp_path / "pixels.bin"), images)
    check(load_data(tmp_path / "archive.npy"), images, [0, 1])


def test_other_integer_types_in_range_are_converted(tmp_path):
    images = pixels(3, 1, 4, 4)
    images[0, 0, 0, :2] = 0, 255  # the extremes, so one step further is out of range
    for dtype in (np.int16, np.uint16, np.int64):
        np.save(tmp_path / "i.npy", images.astype(dtype))
        check(load_data(tmp_path / "i.npy"), images)
    np.save(tmp_path / "wide.npy", images.astype(np.int16) + 1)
    assert "0..255" in fails(tmp_path / "wide.npy")
    np.save(tmp_path / "neg.npy", images.astype(np.int16) - 1)
    assert "0..255" in fails(tmp_path / "neg.npy")


def test_floats_refused_with_normalisation_hint(tmp_path):
    np.save(tmp_path / "f.npy", pixels(2, 3, 4, 4).astype(np.float32) / 255)
    msg = fails(tmp_path / "f.npy")
    assert "uint8" in msg and "0..255" in msg and "--mean" in msg
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4)))
    assert "uint8" in fails(tmp_path / "f.npz")


class _Payload:
    def __reduce__(self):
        return (open, (str(Path(tempfile.gettempdir()) / "qexport-data-pwned"), "w"))


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    marker = Path(tempfile.gettempdir()) / "qexport-data-pwned"
    marker.unlink(missing_ok=True)
    np.save(tmp_path / "obj.npy", np.array([_Payload()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", images=np.array([_Payload()], dtype=object))
    fails(tmp_path / "obj.npy")
    fails(tmp_path / "obj.npz")
    assert not marker.exists()


@pytest.mark.parametrize("shape, words", [
    ((5, 6), "2-D"),
    ((2, 3, 4, 4, 1), "5-D"),
    ((2, 5, 5, 5), "neither axis"),
    ((2, 3, 4, 3), "N x H x W x C"),  # reads both ways and nothing says which
    ((2, 1, 8, 1), "N x C x H x W"),
])
def test_bad_shapes(tmp_path, shape, words):
    np.save(tmp_path / "shape.npy", np.zeros(shape, np.uint8))
    assert words in fails(tmp_path / "shape.npy")


def test_ambiguous_shape_decided_by_the_network(tmp_path):
    arr = pixels(2, 3, 4, 3)
    np.save(tmp_path / "amb.npy", arr)
    check(load_data(tmp_path / "amb.npy", channels=3, size=(4, 3)), arr)  # N x C x H x W
    check(load_data(tmp_path / "amb.npy", size=(3, 4)), np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    fails(tmp_path / "amb.npy", channels=3)  # both readings have 3 channels


def test_npz_problems(tmp_path):
    images = pixels(4, 4, 4)
    np.savez(tmp_path / "both.npz", images=images, x=images)
    assert "'images'" in fails(tmp_path / "both.npz") and "'x'" in fails(tmp_path / "both.npz")
    np.savez(tmp_path / "none.npz", pictures=images)
    assert "pictures" in fails(tmp_path / "none.npz")
    np.savez(tmp_path / "count.npz", images=images, labels=np.arange(3))
    assert "3 labels for 4 images" in fails(tmp_path / "count.npz")
    np.savez(tmp_path / "neg.npz", images=images, labels=np.array([0, 1, -1, 2]))
    assert "-1" in fails(tmp_path / "neg.npz")
    np.savez(tmp_path / "flt.npz", images=images, labels=np.zeros(4))
    assert "float64" in fails(tmp_path / "flt.npz")
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 4, 4), np.uint8))
    assert "no images" in fails(tmp_path / "empty.npz")
    (tmp_path / "broken.npz").write_bytes((tmp_path / "count.npz").read_bytes()[:60])
    fails(tmp_path / "broken.npz")
    np.save(tmp_path / "cut.npy", images)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:-5])
    fails(tmp_path / "cut.npy")
    # a torch-style zip checkpoint is a zip but not an npz of images
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as z:
        for k in range(8):
            z.writestr(f"archive/data/{k}", b"\0" * 16)
    assert "..." in fails(tmp_path / "model.pt")


def test_network_shape_checks(tmp_path):
    np.savez(tmp_path / "digits.npz", images=pixels(5, 8, 8))
    assert fails(tmp_path / "digits.npz", channels=1, size=28) == \
        f"{tmp_path / 'digits.npz'}: images are 1 x 8 x 8, the network takes 1 x 28 x 28"
    msg = fails(tmp_path / "digits.npz", channels=3)
    assert "1 channel" in msg and "3" in msg and "not turned into 3 channels" in msg
    assert "8 x 8" in fails(tmp_path / "digits.npz", size=(8, 9))
    check(load_data(tmp_path / "digits.npz", channels=1, size=8), load_data(tmp_path / "digits.npz").images)


def test_limit_and_bad_arguments(tmp_path):
    images, labels = pixels(10, 3, 4, 4), np.arange(10)[::-1]
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    check(load_data(tmp_path / "d.npz", limit=3), images[:3], labels[:3])
    check(load_data(tmp_path / "d.npz", limit=50), images, labels)
    for kw in ({"limit": 0}, {"limit": -1}, {"limit": 2.0}, {"limit": True}, {"channels": 0}, {"channels": "3"},
               {"size": 0}, {"size": (4,)}, {"size": (4, 4, 4)}, {"size": "4"}):
        with pytest.raises(UsageError):
            load_data(tmp_path / "d.npz", **kw)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 4), c=st.sampled_from((1, 3)), h=st.integers(4, 9), w=st.integers(4, 9),
       layout=st.sampled_from(("nchw", "nhw", "nhwc")), container=st.sampled_from(("npy", "npz", "npz-x")),
       seed=st.integers(0, 2**32 - 1), labelled=st.booleans())
def test_property_round_trip(n, c, h, w, layout, container, seed, labelled):
    nchw = np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    if layout == "nhw":
        nchw = nchw[:, :1]
        written = nchw[:, 0]
    elif layout == "nhwc":
        written = nchw.transpose(0, 2, 3, 1)
    else:
        written = nchw
    labels = np.arange(n) * 7 if labelled and container != "npy" else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"r.{container[:3]}"
        if container == "npy":
            np.save(path, written)
        elif container == "npz":
            np.savez(path, images=written, **({"labels": labels} if labels is not None else {}))
        else:
            np.savez(path, x=written, **({"y": labels} if labels is not None else {}))
        check(load_data(path), nchw, labels)


# --------------------------------------------------------------------------- image folders


def _save(path: Path, chw: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)).save(path)


def test_class_folders(tmp_path):
    root = tmp_path / "pets"
    imgs = pixels(5, 3, 6, 7)
    layout = [("dog", "b.png"), ("cat", "z.bmp"), ("dog", "a.bmp"), ("cat", "m.png"), ("emu", "q.png")]
    for img, (cls, name) in zip(imgs, layout):
        _save(root / cls / name, img)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "ant").mkdir()  # an empty class still takes its place in the numbering
    (root / ".hidden").mkdir()
    ds = load_data(root)
    # classes by name: ant 0, cat 1, dog 2, emu 3; files by name within each
    check(ds, imgs[[3, 1, 2, 0, 4]], [1, 1, 2, 2, 3], classes=4)
    assert ds.source == "pets"
    check(load_data(root, limit=2, channels=3, size=(6, 7)), imgs[[3, 1]], [1, 1], classes=4)


def test_flat_folder_with_cifar_bmp_names_and_plain_names(tmp_path):
    imgs = pixels(12, 1, 5, 5)
    labels = [7, 0, 3, 3, 9, 1, 0, 2, 5, 5, 8, 4]
    order = RNG.permutation(12)
    for i in order:  # creation order must not matter
        _save(tmp_path / "test" / f"{labels[i]}_{i}.{'png' if i % 2 else 'bmp'}", imgs[i])
    check(load_data(tmp_path / "test"), imgs, labels)  # index order: 2 before 10
    for i in order:
        _save(tmp_path / "plain" / f"img{i:02d}.png", imgs[i])
    check(load_data(tmp_path / "plain"), imgs)
    _save(tmp_path / "plain" / "zz.png", pixels(1, 9, 9))  # another size, but past the limit
    check(load_data(tmp_path / "plain", limit=12), imgs)
    assert "zz.png" in fails(tmp_path / "plain", name="zz.png")


def test_cifar_bmp_output_reads_back(tmp_path):
    from qexport.cifar import convert

    made = make_cifar10(tmp_path, batch_sizes=(12, 0, 0, 0, 0), test_size=12)
    convert(made.root, tmp_path / "out", fmt="bmp")
    want = made.splits["test"]
    check(load_data(tmp_path / "out" / "test"), want.data.reshape(-1, 3, 32, 32), want.labels["fine"])
    convert(made.root, tmp_path / "dirs", split="test", fmt="png", layout="class-dirs")
    ds = load_data(tmp_path / "dirs" / "test")
    order = np.argsort(want.labels["fine"], kind="stable")  # class folders, then index within each
    check(ds, want.data.reshape(-1, 3, 32, 32)[order], want.labels["fine"][order], classes=10)
    assert "train/ and test/" in fails(tmp_path / "out")  # cifar-bmp's top folder: one split, please


def test_folder_problems(tmp_path):
    def folder(name, files):
        d = tmp_path / name
        for fname, arr in files:
            _save(d / fname, arr)
        return d

    gray, rgb = pixels(1, 6, 6), pixels(3, 6, 6)
    msg = fails(folder("modes", [("a.png", gray), ("b.png", rgb)]), name="b.png")
    assert "RGB" in msg and "a.png" in msg
    msg = fails(folder("sizes", [("a.png", gray), ("b.png", pixels(1, 6, 7))]), name="b.png")
    assert "7 x 6" in msg and "6 x 6" in msg
    assert "0_1.png" in fails(folder("mixednames", [("0_1.png", gray), ("1_5.png", gray), ("cat.png", gray)]),
                              name="cat.png")
    assert "index 3" in fails(folder("dup", [("0_3.png", gray), ("1_3.bmp", gray)]), name="_3.")
    d = folder("both", [("a.png", gray), ("sub/b.png", gray)])
    assert "sub-folders" in fails(d)
    d = folder("splits", [("train/0_0.png", gray), ("test/0_0.png", gray)])
    assert "train/ and test/" in fails(d)
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty")
    d = tmp_path / "alpha"
    d.mkdir()
    Image.new("RGBA", (4, 4)).save(d / "a.png")
    assert "RGBA" in fails(d, name="a.png")
    d = tmp_path / "palette"
    d.mkdir()
    Image.new("P", (4, 4)).save(d / "a.png")
    assert "only L" in fails(d, name="a.png")
    d = tmp_path / "liar"
    d.mkdir()
    Image.new("L", (4, 4)).save(d / "a.png", format="BMP")
    assert "BMP" in fails(d, name="a.png")
    d = tmp_path / "cut"
    d.mkdir()
    buf = io.BytesIO()
    Image.fromarray(pixels(40, 40)).save(buf, format="PNG")
    (d / "a.png").write_bytes(buf.getvalue()[:100])
    fails(d, name="a.png")


# --------------------------------------------------------------------------- CIFAR pickles


def _cifar10_dict(data, labels):
    return {b"batch_label": b"testing batch 1 of 1", b"labels": list(labels), b"data": data,
            b"filenames": [b"f%d.png" % i for i in range(len(data))]}


@pytest.mark.parametrize("protocol", range(6))
def test_cifar_pickles_every_protocol(tmp_path, protocol):
    data, labels = pixels(7, 3072), [int(x) for x in RNG.integers(0, 10, 7)]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(_cifar10_dict(data, labels), protocol=protocol))
    check(load_data(tmp_path / "test_batch"), data.reshape(7, 3, 32, 32), labels, classes=10)
    # a folder holding it with its meta: the test split
    meta = {b"num_cases_per_batch": 7, b"label_names": [n.encode() for n in "abcdefghij"], b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    ds = load_data(tmp_path, limit=5)
    check(ds, data.reshape(7, 3, 32, 32)[:5], labels[:5], classes=10)
    assert ds.source == tmp_path.name
    fine = [int(x) for x in RNG.integers(0, 100, 7)]
    c100 = {b"filenames": [], b"batch_label": b"x", b"fine_labels": fine, b"coarse_labels": [f % 20 for f in fine],
            b"data": data}
    (tmp_path / "train").write_bytes(pickle.dumps(c100, protocol=protocol))
    check(load_data(tmp_path / "train"), data.reshape(7, 3, 32, 32), fine, classes=100)


def test_cifar_folders_and_archives(tmp_path):
    made = make_cifar10(tmp_path / "c10", batch_sizes=(5, 5, 5, 5, 5), test_size=30)
    test = made.splits["test"]
    check(load_data(made.root), test.data.reshape(-1, 3, 32, 32), test.labels["fine"], classes=10)
    train = made.splits["train"]
    check(load_data(made.root / "data_batch_2"), train.data[5:10].reshape(-1, 3, 32, 32),
          train.labels["fine"][5:10], classes=10)
    tgz = make_tar(made.root, tmp_path / "cifar-10-python.tar.gz")
    ds = load_data(tgz, limit=4)
    check(ds, test.data[:4].reshape(-1, 3, 32, 32), test.labels["fine"][:4], classes=10)
    assert ds.source == "cifar-10-python.tar.gz"
    c100 = make_cifar100(tmp_path / "c100", train_size=20, test_size=20)
    t = c100.splits["test"]
    tgz = make_tar(c100.root, tmp_path / "renamed.bin")  # content, not the name, says tar.gz
    check(load_data(tgz), t.data.reshape(-1, 3, 32, 32), t.labels["fine"], classes=100)
    # an uncompressed tar written by tarfile directly
    raw = pickle.dumps(_cifar10_dict(test.data[:3], test.labels["fine"][:3].tolist()), protocol=4)
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    check(load_data(tmp_path / "plain.tar"), test.data[:3].reshape(-1, 3, 32, 32), test.labels["fine"][:3], 10)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(Path(tempfile.gettempdir()) / "qexport-data-evil"),))


def test_cifar_problems(tmp_path):
    data = pixels(4, 3072)
    (tmp_path / "range").write_bytes(pickle.dumps(_cifar10_dict(data, [0, 1, 10, 2]), protocol=2))
    assert "10" in fails(tmp_path / "range") and "0..9" in fails(tmp_path / "range")
    (tmp_path / "count").write_bytes(pickle.dumps(_cifar10_dict(data, [0, 1, 2]), protocol=3))
    assert "3 labels for 4 images" in fails(tmp_path / "count")
    (tmp_path / "cut").write_bytes(pickle.dumps(_cifar10_dict(data, [0, 1, 2, 3]), protocol=5)[:5000])
    fails(tmp_path / "cut")
    (tmp_path / "shape").write_bytes(pickle.dumps({b"data": pixels(2, 100), b"labels": [0, 1]}, protocol=2))
    assert "3072" in fails(tmp_path / "shape")
    marker = Path(tempfile.gettempdir()) / "qexport-data-evil"
    marker.unlink(missing_ok=True)
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    fails(tmp_path / "evil", exc=UnsafeInputError)
    assert not marker.exists()
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("photos/a.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    fails(tmp_path / "other.tar.gz")


# --------------------------------------------------------------------------- MNIST idx


def idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 0x00000803, n, h, w) + images.tobytes()


def idx_labels(labels) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def test_mnist_raw_and_gz(tmp_path):
    imgs, labels = pixels(6, 28, 28), [5, 0, 4, 1, 9, 2]
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_images(imgs))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels(labels))
    ds = load_data(tmp_path / "train-images-idx3-ubyte", channels=1, size=28)
    check(ds, imgs[:, None], labels, classes=10)
    assert ds.source == "train-images-idx3-ubyte"
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images(imgs[:4])))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(labels[:4])))
    check(load_data(tmp_path / "t10k-images-idx3-ubyte.gz", limit=3), imgs[:3, None], labels[:3], classes=10)
    # labels stored raw beside gzipped images (and the other way round)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_labels(labels[:4]))
    check(load_data(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs[:4, None], labels[:4], classes=10)
    # no labels file: images only
    (tmp_path / "solo").mkdir()
    (tmp_path / "solo" / "train-images-idx3-ubyte").write_bytes(idx_images(imgs))
    check(load_data(tmp_path / "solo" / "train-images-idx3-ubyte"), imgs[:, None], None, classes=10)
    # a gzip of idx under an unhelpful name is still found by content
    (tmp_path / "digits.dat").write_bytes(gzip.compress(idx_images(imgs[:2])))
    check(load_data(tmp_path / "digits.dat"), imgs[:2, None], None, classes=10)


def test_mnist_problems(tmp_path):
    imgs = pixels(3, 4, 5)
    full = idx_images(imgs)  # 16 + 60 bytes
    (tmp_path / "train-images-idx3-ubyte").write_bytes(full[:-7])
    msg = fails(tmp_path / "train-images-idx3-ubyte")
    assert "truncated" in msg and "76" in msg and "69" in msg
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(full[:-1]))
    msg = fails(tmp_path / "t10k-images-idx3-ubyte.gz")
    assert "76" in msg and "75" in msg
    (tmp_path / "long-images-idx3-ubyte").write_bytes(full + b"\0")
    assert "longer" in fails(tmp_path / "long-images-idx3-ubyte") and "77" in fails(tmp_path / "long-images-idx3-ubyte")
    (tmp_path / "short-images-idx3-ubyte").write_bytes(full[:10])
    assert "header" in fails(tmp_path / "short-images-idx3-ubyte")
    (tmp_path / "a-images-idx3-ubyte").write_bytes(full)
    (tmp_path / "a-labels-idx1-ubyte").write_bytes(idx_labels([1, 2]))
    assert "2 labels for the 3 images" in fails(tmp_path / "a-images-idx3-ubyte", name="a-labels-idx1-ubyte")
    (tmp_path / "b-images-idx3-ubyte").write_bytes(full)
    (tmp_path / "b-labels-idx1-ubyte").write_bytes(idx_labels([1, 10, 2]))
    assert "0..9" in fails(tmp_path / "b-images-idx3-ubyte", name="b-labels-idx1-ubyte")
    (tmp_path / "c-images-idx3-ubyte").write_bytes(full)
    (tmp_path / "c-labels-idx1-ubyte").write_bytes(idx_labels([1, 2, 3])[:-1])
    assert "truncated" in fails(tmp_path / "c-images-idx3-ubyte", name="c-labels-idx1-ubyte")
    assert "images file" in fails(tmp_path / "a-labels-idx1-ubyte")
    (tmp_path / "d-images-idx3-ubyte").write_bytes(full)
    (tmp_path / "d-labels-idx1-ubyte").write_bytes(idx_images(imgs))  # an images file where labels belong
    assert "0x00000801" in fails(tmp_path / "d-images-idx3-ubyte", name="d-labels-idx1-ubyte")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(full)[:-12])
    fails(tmp_path / "cut.gz")
    (tmp_path / "huge-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 2**31, 2**16, 2**16))
    fails(tmp_path / "huge-images-idx3-ubyte")


# --------------------------------------------------------------------------- unknown input


def test_unknown_and_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert "unknown data format" in fails(tmp_path / "notes.txt")
    (tmp_path / "empty.npy").write_bytes(b"")
    fails(tmp_path / "empty.npy")
    (tmp_path / "zip.gz").write_bytes(gzip.compress(b"just text"))
    fails(tmp_path / "zip.gz")
    assert "no such file" in fails(tmp_path / "absent.npz")
    with pytest.raises(UsageError):
        load_data("")


def test_no_torch_import():
    code = "import sys, qexport.data; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# --------------------------------------------------------------------------- normalisation


def test_parse_normalisation():
    assert parse_normalisation("0.4914,0.4822,0.4465", "0.247,0.243,0.261", 3) == \
        ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
    assert parse_normalisation("0.5", " 0.25 ", 3) == ((0.5,) * 3, (0.25,) * 3)
    assert parse_normalisation("0.1307", "0.3081", 1) == ((0.1307,), (0.3081,))
    assert parse_normalisation(None, None, 3) == ((0.0,) * 3, (1.0,) * 3)
    bad = [("0.1,0.2", None, 3, "2 values for 3 channels"), (None, "0.1,0.2,0.3", 1, "3 values for 1 channel"),
           (None, "0", 1, "positive"), (None, "0.2,-0.1,0.2", 3, "positive"), ("a,b,c", None, 3, "numbers"),
           ("", None, 1, "numbers"), ("nan", None, 1, "finite"), ("123.675", None, 1, "0..1"),
           (None, "58.395", 1, "0..1"), ("0.5", "0.5", 0, "channels")]
    for mean, std, c, words in bad:
        with pytest.raises(UsageError) as info:
            parse_normalisation(mean, std, c)
        assert words in str(info.value) and "\n" not in str(info.value), (mean, std, str(info.value))
