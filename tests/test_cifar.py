"""`qexport cifar-bmp` (README "CIFAR-10/100 to images", issue 7): CIFAR-10/100 pickles -> BMP/PNG, pixel-exact and safe.

Data comes from tests/cifar_data.py, which writes the original Python 2 protocol-2 format at a
small size; every expected name, label and pixel is computed from that generator's arrays and the
spec's rules, never from the converter's output.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_data import (
    CIFAR10_NAMES,
    Global,
    Reduce,
    cifar10_batch,
    hwc,
    make_cifar10,
    make_cifar100,
    make_tar,
    py2_pickle,
    read_bmp_bgr,
)
from qexport import cifar
from qexport.errors import InputError, UnsafeInputError

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("QEXPORT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "qexport.cli", "cifar-bmp", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def ok(*args, cwd=None) -> subprocess.CompletedProcess:
    r = run(*args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qexport: wrote "), r.stderr  # no progress bar on a pipe
    return r


def fails(code: int, *args, cwd=None) -> str:
    r = run(*args, cwd=cwd)
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return r.stderr


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_flat(made, kind="fine", splits=("train", "test"), limit=None, ext="bmp") -> dict[str, tuple]:
    """README naming: {split}/{label}_{index}.{ext}, index = position in the split."""
    out = {}
    for split in splits:
        sp = made.splits[split]
        n = len(sp.data) if limit is None else min(limit, len(sp.data))
        for i in range(n):
            label = int(sp.labels[kind][i])
            out[f"{split}/{label}_{i}.{ext}"] = (sp.data[i], label)
    return out


def expected_class_dirs(made, kind="fine", splits=("train", "test"), ext="bmp") -> dict[str, tuple]:
    out = {}
    for split in splits:
        sp = made.splits[split]
        for i in range(len(sp.data)):
            label = int(sp.labels[kind][i])
            out[f"{split}/{made.names[kind][label]}/{i:05d}.{ext}"] = (sp.data[i], label)
    return out


def check_images(out: Path, expected: dict, fmt="bmp") -> None:
    got = files_under(out)
    got.pop("labels.csv", None)
    assert sorted(got) == sorted(expected)
    assert not [p for p in out.rglob(".*")]  # no staging folder or temporary file left
    for rel, (row, _label) in expected.items():
        raw = got[rel]
        with Image.open(io.BytesIO(raw)) as im:
            assert im.format == fmt.upper() and im.mode == "RGB" and im.size == (32, 32)
            rgb = np.asarray(im)
        np.testing.assert_array_equal(rgb, hwc(row), err_msg=rel)  # Pillow reads RGB == source planes
        # What seed 000's consumer does: cv2.imread gives BGR, [:, :, ::-1] turns it back into RGB.
        np.testing.assert_array_equal(rgb[:, :, ::-1], hwc(row)[:, :, ::-1], err_msg=rel)
        if fmt == "bmp":
            fields, bgr = read_bmp_bgr(raw)
            np.testing.assert_array_equal(bgr, hwc(row)[:, :, ::-1], err_msg=rel)
            np.testing.assert_array_equal(bgr[:, :, ::-1], hwc(row), err_msg=rel)
            assert fields["file_size"] == len(raw) == 14 + 40 + 32 * 96
            assert (fields["offset"], fields["header_size"], fields["width"], fields["height"]) == (54, 40, 32, 32)
            assert (fields["planes"], fields["image_size"], fields["reserved"]) == (1, 32 * 96, (0, 0))
        else:
            assert raw[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def c10(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    made = make_cifar10(root)
    make_tar(made.root, root / "cifar-10-python.tar.gz")
    return made


@pytest.fixture(scope="module")
def c100(tmp_path_factory):
    root = tmp_path_factory.mktemp("c100")
    made = make_cifar100(root)
    make_tar(made.root, root / "cifar-100-python.tar.gz")
    return made


# --------------------------------------------------------------------------- conversion


def test_cifar10_folder_flat_pixel_exact(c10, tmp_path):
    r = ok(c10.root, "-o", tmp_path / "out")
    assert "240 BMP images" in r.stderr
    check_images(tmp_path / "out", expected_flat(c10))


def test_train_index_is_cumulative_over_batches(tmp_path):
    # Uneven batches: index = i + images in the preceding batches.  Equal batches of 40 give
    # i + (j-1)*40, exactly as seed 000's i + (j-1)*10000 for the real 10000-image batches.
    sizes = (3, 5, 7, 2, 4)
    made = make_cifar10(tmp_path, batch_sizes=sizes, test_size=6)
    ok(made.root, "-o", tmp_path / "out")
    names = set(files_under(tmp_path / "out"))
    start = 0
    for j, n in enumerate(sizes, start=1):
        for i in range(n):
            assert f"train/{int(made.splits['train'].labels['fine'][start + i])}_{i + start}.bmp" in names
        start += n
    equal = make_cifar10(tmp_path / "eq", batch_sizes=(40,) * 5, test_size=1)
    ok(equal.root, "-o", tmp_path / "eq_out", "--split", "train")
    eq_names = set(files_under(tmp_path / "eq_out"))
    for j in range(1, 6):
        for i in (0, 39):
            g = i + (j - 1) * 40  # the seed's formula with the batch size of this data
            assert f"train/{int(equal.splits['train'].labels['fine'][g])}_{g}.bmp" in eq_names


def test_tar_read_in_place_with_default_src_and_output(c10, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "cifar-10-python.tar.gz").write_bytes((c10.root.parent / "cifar-10-python.tar.gz").read_bytes())
    ok(cwd=work)
    assert sorted(p.name for p in work.iterdir()) == ["cifar-10-bmp", "cifar-10-python.tar.gz"]  # nothing extracted
    check_images(work / "cifar-10-bmp", expected_flat(c10))
    ok(c10.root, "-o", tmp_path / "from_folder")
    assert files_under(work / "cifar-10-bmp") == files_under(tmp_path / "from_folder")


def test_class_dirs_layout_and_labels_csv(c10, tmp_path):
    ok(c10.root.parent / "cifar-10-python.tar.gz", "-o", tmp_path / "out", "--layout", "class-dirs", "--labels-csv")
    expected = expected_class_dirs(c10)
    assert "train/airplane/00000.bmp" in expected  # the generator puts class 0 first
    check_images(tmp_path / "out", expected)
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "label", "class_name"]
    assert rows[1:] == [[f, str(lab), CIFAR10_NAMES[lab]] for f, (_, lab) in expected.items()]


def test_cifar10_class_names_from_meta_or_standard(tmp_path):
    custom = tuple(f"klass-{k}" for k in range(10))
    made = make_cifar10(tmp_path / "a", batch_sizes=(10,) * 5, test_size=10, names=custom)
    ok(made.root, "-o", tmp_path / "a_out", "--layout", "class-dirs", "--split", "test")
    assert sorted(p.name for p in (tmp_path / "a_out" / "test").iterdir()) == sorted(custom)
    bare = make_cifar10(tmp_path / "b", batch_sizes=(10,) * 5, test_size=10, meta=False)
    ok(bare.root, "-o", tmp_path / "b_out", "--layout", "class-dirs", "--split", "test")
    assert sorted(p.name for p in (tmp_path / "b_out" / "test").iterdir()) == sorted(CIFAR10_NAMES)


@pytest.mark.parametrize("source", ["folder", "tar"])
def test_cifar100_fine_and_coarse(c100, tmp_path, source):
    src = c100.root if source == "folder" else c100.root.parent / "cifar-100-python.tar.gz"
    ok(src, "-o", tmp_path / "fine")
    check_images(tmp_path / "fine", expected_flat(c100, "fine"))
    ok(src, "-o", tmp_path / "coarse", "--label", "coarse", "--layout", "class-dirs", "--labels-csv")
    expected = expected_class_dirs(c100, "coarse")
    check_images(tmp_path / "coarse", expected)
    with open(tmp_path / "coarse" / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert rows == [[f, str(lab), c100.names["coarse"][lab]] for f, (_, lab) in expected.items()]


def test_default_output_folder_names(c100, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    ok(c100.root, "--limit", "2", cwd=work)
    ok(c100.root, "--limit", "2", "--format", "png", cwd=work)
    assert sorted(p.name for p in work.iterdir()) == ["cifar-100-bmp", "cifar-100-png"]


def test_limit_split_png(c10, tmp_path):
    ok(c10.root, "-o", tmp_path / "out", "--limit", "7", "--split", "train", "--format", "png", "--labels-csv")
    expected = expected_flat(c10, splits=("train",), limit=7, ext="png")
    check_images(tmp_path / "out", expected, fmt="png")
    ok(c10.root, "-o", tmp_path / "t", "--limit", "45", "--split", "train")  # crosses into data_batch_2
    check_images(tmp_path / "t", expected_flat(c10, splits=("train",), limit=45))
    ok(c10.root, "-o", tmp_path / "z", "--limit", "0", "--split", "test")
    assert files_under(tmp_path / "z") == {}


@pytest.mark.parametrize("fmt", ["bmp", "png"])
def test_deterministic_bytes(c10, tmp_path, fmt):
    for name in ("one", "two"):
        ok(c10.root, "-o", tmp_path / name, "--format", fmt, "--labels-csv", "--layout", "class-dirs")
    one, two = files_under(tmp_path / "one"), files_under(tmp_path / "two")
    assert len(one) == 241 and one == two


def test_str_keys_and_python3_pickles(c10, tmp_path):
    # latin1-style pickles: str keys (BINUNICODE) around the same Python 2 arrays.
    made = make_cifar10(tmp_path / "s", batch_sizes=(8,) * 5, test_size=8, str_keys=True)
    ok(made.root, "-o", tmp_path / "s_out")
    check_images(tmp_path / "s_out", expected_flat(made))
    # A batch re-pickled by Python 3 numpy (numpy._core module names, protocol 4, str keys).
    folder = tmp_path / "p3" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    data = {}
    for name in [f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]:
        data[name] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [int(x) for x in rng.integers(0, 10, 4)])
        arr, labels = data[name]
        (folder / name).write_bytes(pickle.dumps({"batch_label": "b", "labels": labels, "data": arr}, protocol=4))
    assert b"numpy._core" in (folder / "test_batch").read_bytes() or b"numpy.core" in (folder / "test_batch").read_bytes()
    ok(folder, "-o", tmp_path / "p3_out")
    arr, labels = data["data_batch_2"]
    with Image.open(tmp_path / "p3_out" / "train" / f"{labels[1]}_5.bmp") as im:
        np.testing.assert_array_equal(np.asarray(im), hwc(arr[1]))


def test_bmp_bytes_equal_pillow_encoder(c10, tmp_path):
    ok(c10.root, "-o", tmp_path / "out", "--split", "test")
    for i in (0, 1, 39):
        label = int(c10.splits["test"].labels["fine"][i])
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(hwc(c10.splits["test"].data[i]))).save(buf, "BMP")
        assert (tmp_path / "out" / "test" / f"{label}_{i}.bmp").read_bytes() == buf.getvalue()


@pytest.mark.parametrize("width,height", [(5, 3), (32, 32), (1, 1), (6, 2)])
def test_bmp_encoder_pads_rows(width, height):
    rng = np.random.default_rng(width * 100 + height)
    data = rng.integers(0, 256, (3, 3 * width * height), dtype=np.uint8)
    files = cifar.encode_bmp_batch(data, width, height)
    stride = (width * 3 + 3) // 4 * 4
    assert files.shape == (3, 54 + stride * height)
    for k in range(3):
        source = data[k].reshape(3, height, width).transpose(1, 2, 0)
        fields, bgr = read_bmp_bgr(files[k].tobytes())
        assert fields["file_size"] == files.shape[1] and fields["image_size"] == stride * height
        np.testing.assert_array_equal(bgr[:, :, ::-1], source)
        with Image.open(io.BytesIO(files[k].tobytes())) as im:
            np.testing.assert_array_equal(np.asarray(im), source)


# --------------------------------------------------------------------------- safety


def _one_batch_folder(tmp_path: Path, payload: bytes, name="data_batch_1") -> Path:
    made = make_cifar10(tmp_path / "src", batch_sizes=(4,) * 5, test_size=4)
    (made.root / name).write_bytes(payload)
    return made.root


def _exec_payload(marker: Path) -> Reduce:
    return Reduce(Global("builtins", "exec"), (f"open({str(marker)!r}, 'w').close()",))


def test_sanity_plain_pickle_would_run_the_payload(tmp_path):
    # The payloads below really execute under an unrestricted unpickler.
    for payload in (_exec_payload(tmp_path / "m1"), Reduce(Global("os", "system"), (f"touch {tmp_path / 'm2'}",))):
        pickle.loads(py2_pickle({b"data": payload}), encoding="bytes")
    assert (tmp_path / "m1").exists() and (tmp_path / "m2").exists()


@pytest.mark.parametrize("where", ["top", "nested"])
@pytest.mark.parametrize("payload_kind", ["exec", "os.system"])
def test_malicious_pickle_refused_and_not_run(tmp_path, where, payload_kind):
    marker = tmp_path / "PWNED"
    payload = (_exec_payload(marker) if payload_kind == "exec"
               else Reduce(Global("os", "system"), (f"touch {marker}",)))
    if where == "top":
        obj = payload
    else:  # hidden inside an otherwise valid batch
        obj = cifar10_batch(np.zeros((4, 3072), np.uint8), [0, 1, 2, 3], "training batch 1 of 5")
        obj[b"filenames"][2] = payload
    src = _one_batch_folder(tmp_path, py2_pickle(obj))
    err = fails(1, src, "-o", tmp_path / "out")
    assert "data_batch_1" in err and ("builtins.exec" in err if payload_kind == "exec" else "os.system" in err)
    assert "refused" in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("__builtin__", "eval"),
    ("subprocess", "Popen"), ("copyreg", "_reconstructor"), ("numpy", "frombuffer"),
    ("numpy.core.multiarray", "scalar"), ("builtins", "bytes"), ("_codecs", "decode"), ("codecs", "encode"),
])  # fmt: skip
def test_other_globals_refused(module, name):
    raw = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    with pytest.raises(UnsafeInputError) as info:
        cifar.load_pickle(raw, "somefile")
    assert str(info.value).startswith("somefile: ")
    assert f"{module}.{name}" in str(info.value)  # named as the file spells it


@pytest.mark.parametrize("args", [b")", b"X\x01\x00\x00\x00xX\x05\x00\x00\x00utf-8\x86", b"X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86",
                                  b"C\x01xX\x06\x00\x00\x00latin1\x86"])  # fmt: skip
def test_codecs_encode_only_with_latin1(args):
    # Python 3 pickles bytes at protocols 0-2 as _codecs.encode(text, 'latin1'): that call alone is
    # admitted; no other encoding, no bytes argument, no missing argument.
    raw = b"\x80\x02c_codecs\nencode\n" + args + b"R."
    with pytest.raises(UnsafeInputError) as info:
        cifar.load_pickle(raw, "somefile")
    assert str(info.value).startswith("somefile: ") and "_codecs.encode" in str(info.value)
    good = b"\x80\x02}X\x01\x00\x00\x00kc_codecs\nencode\nX\x03\x00\x00\x00\xc3\xbfzX\x06\x00\x00\x00latin1\x86Rs."
    assert cifar.load_pickle(good, "f") == {"k": b"\xffz"}


def _array_pickle(dtype_args, dtype_state, shape=(1, 3072), raw=None) -> bytes:
    raw = bytes(3072) if raw is None else raw
    dtype = Reduce(Global("numpy", "dtype"), dtype_args, dtype_state)
    arr = Reduce(Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"),
                 (1, shape, dtype, False, raw))
    return py2_pickle({b"data": arr, b"labels": [0]})


def test_array_reconstruction_is_validated():
    good = (3, b"|", None, None, None, -1, -1, 0)
    d = cifar.load_pickle(_array_pickle((b"u1", 0, 1), good), "f")
    assert d["data"].dtype == np.uint8 and d["data"].shape == (1, 3072)
    bad = [
        ((b"O8", 0, 1), good),  # object arrays would unpickle arbitrary objects
        ((b"u1", 0, 1), (3, b"|", None, (b"a",), {b"a": 1}, -1, -1, 0)),  # structured
        ((b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 63)),  # object/refcount flags
        ((b"V8", 0, 1), good),
    ]
    for args, state in bad:
        with pytest.raises(InputError, match="^f: "):
            cifar.load_pickle(_array_pickle(args, state), "f")
    with pytest.raises(InputError, match="needs 3072 bytes"):
        cifar.load_pickle(_array_pickle((b"u1", 0, 1), good, raw=bytes(100)), "f")
    assert np.dtype(np.uint8).isnative and np.dtype(np.uint8).byteorder == "|"  # no global dtype was touched


def _tar_with(made, tar_path: Path, extra) -> Path:
    return make_tar(made.root, tar_path, extra)


def _info(name, kind=tarfile.REGTYPE, size=0, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode, info.mtime = kind, size, link, 0o644, 1234567890
    return info


def test_malicious_tar_members_are_never_written(tmp_path):
    made = make_cifar10(tmp_path / "src", batch_sizes=(4,) * 5, test_size=4)
    work = tmp_path / "work"
    work.mkdir()
    absolute = tmp_path / "abs_evil.txt"
    evil = b"evil"
    extra = [
        (_info("../evil.txt", size=len(evil)), evil),
        (_info("cifar-10-batches-py/../../evil2.txt", size=len(evil)), evil),
        (_info(str(absolute), size=len(evil)), evil),
        (_info("cifar-10-batches-py/link", tarfile.SYMTYPE, link="../../outside"), None),
        (_info("cifar-10-batches-py/hard", tarfile.LNKTYPE, link="/etc/passwd"), None),
    ]
    tar = _tar_with(made, work / "cifar-10-python.tar.gz", extra)
    before = {p for p in tmp_path.rglob("*")}
    ok(tar, "-o", work / "out", cwd=work)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all((work / "out") in p.parents or p == work / "out" for p in created)
    assert not absolute.exists() and not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil2.txt").exists()
    assert len(files_under(work / "out")) == 24


@pytest.mark.parametrize("kind,link", [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "cifar-10-batches-py/test_batch")])
def test_link_in_place_of_a_batch_is_refused(tmp_path, kind, link):
    made = make_cifar10(tmp_path / "src", batch_sizes=(4,) * 5, test_size=4)
    (made.root / "data_batch_3").unlink()
    tar = _tar_with(made, tmp_path / "cifar-10-python.tar.gz", [(_info("cifar-10-batches-py/data_batch_3", kind, link=link), None)])
    err = fails(1, tar, "-o", tmp_path / "out")
    assert "data_batch_3" in err and "link" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad input -> one line, exit 1, no output


def _bad_batch(kind: str) -> bytes:
    good = cifar10_batch(np.zeros((4, 3072), np.uint8), [0, 1, 2, 3], "training batch 2 of 5")
    if kind == "truncated":
        return py2_pickle(good)[:5000]
    if kind == "shape":
        good[b"data"] = np.zeros((4, 3071), np.uint8)
    elif kind == "dtype":
        good[b"data"] = np.zeros((4, 3072), np.int32)
    elif kind == "label_range":
        good[b"labels"] = [0, 1, 10, 3]
    elif kind == "negative_label":
        good[b"labels"] = [0, -1, 2, 3]
    elif kind == "label_count":
        good[b"labels"] = [0, 1, 2]
    elif kind == "label_type":
        good[b"labels"] = [0, 1, b"2", 3]
    elif kind == "no_data":
        del good[b"data"]
    elif kind == "not_dict":
        return py2_pickle([1, 2, 3])
    elif kind == "garbage":
        return b"this is not a pickle at all"
    elif kind == "empty":
        return b""
    return py2_pickle(good)


BAD = {
    "truncated": "truncated", "shape": "(4, 3071)", "dtype": "int32", "label_range": "'labels'[2] = 10",
    "negative_label": "'labels'[1] = -1", "label_count": "3 labels for 4 images", "label_type": "bytes",
    "no_data": "no 'data'", "not_dict": "list", "garbage": "data_batch_2", "empty": "data_batch_2",
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_batch_one_line_no_output(tmp_path, kind):
    src = _one_batch_folder(tmp_path, _bad_batch(kind), name="data_batch_2")
    err = fails(1, src, "-o", tmp_path / "out")
    assert "data_batch_2" in err and BAD[kind] in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["truncated_gz", "not_archive", "missing_member"])
def test_bad_archive_one_line(tmp_path, kind):
    made = make_cifar10(tmp_path / "src", batch_sizes=(4,) * 5, test_size=4)
    tar = tmp_path / "cifar-10-python.tar.gz"
    if kind == "missing_member":
        (made.root / "data_batch_4").unlink()
        make_tar(made.root, tar)
    else:
        make_tar(made.root, tar)
        raw = tar.read_bytes()
        tar.write_bytes(raw[: len(raw) // 2] if kind == "truncated_gz" else b"plain text, not a tar" * 10)
    err = fails(1, tar, "-o", tmp_path / "out")
    assert "cifar-10-python.tar.gz" in err
    if kind == "missing_member":
        assert "data_batch_4" in err
    assert not (tmp_path / "out").exists()


def test_cifar100_bad_coarse_label(tmp_path):
    made = make_cifar100(tmp_path, train_size=20, test_size=5)
    d = pickle.loads((made.root / "test").read_bytes(), encoding="bytes")  # our own generator's file
    d[b"coarse_labels"][3] = 20
    (made.root / "test").write_bytes(py2_pickle(d))
    err = fails(1, made.root, "-o", tmp_path / "out")
    assert "test" in err and "'coarse_labels'[3] = 20" in err and "0..19" in err


def test_usage_errors(c10, tmp_path):
    assert "CIFAR-100" in fails(2, c10.root, "-o", tmp_path / "o", "--label", "coarse")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no SRC given" in fails(2, cwd=empty)
    (tmp_path / "file").write_text("x")
    assert "not a folder" in fails(1, c10.root, "-o", tmp_path / "file")
    assert "no such" in fails(1, tmp_path / "nope", "-o", tmp_path / "o2")


def test_interrupted_run_leaves_only_complete_files(c10, tmp_path, monkeypatch):
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 57:
            real_write(fd, bytes(data)[:100])  # a partial file is on disk when the interrupt hits
            raise KeyboardInterrupt
        return real_write(fd, data)

    monkeypatch.setattr(cifar.conversion.os, "write", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        cifar.convert(c10.root, tmp_path / "out")
    monkeypatch.undo()
    got = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
           for p in (tmp_path / "out").rglob("*") if p.is_file()}  # fmt: skip
    expected = expected_flat(c10)
    assert len(got) == 56
    assert {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_dir()} == {"train"}
    for rel, raw in got.items():
        assert rel in expected  # no temporary file left behind
        assert read_bmp_bgr(raw)[1].tobytes() == hwc(expected[rel][0])[:, :, ::-1].tobytes()


def test_no_torch_import(c10, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from qexport.cli import cli
        cli.main(args=["cifar-bmp", {str(c10.root)!r}, "-o", {str(tmp_path / 'out')!r}, "--format", "png",
                       "--labels-csv"], prog_name="qexport", standalone_mode=False)
        print("torch" in sys.modules, "qexport.cifar" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]
    assert len(files_under(tmp_path / "out")) == 241


def test_progress_bar_on_a_terminal(c10, tmp_path):
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "qexport.cli", "cifar-bmp", str(c10.root), "-o", str(tmp_path / "o")],
                            stderr=slave, stdout=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=600) == 0
    text = b"".join(chunks).decode()
    assert "converting" in text and "100%" in text and "qexport: wrote 240" in text


def test_sigterm_mid_run_leaves_only_complete_files(tmp_path):
    import signal
    import time

    made = make_cifar10(tmp_path / "src", batch_sizes=(2000,) * 5, test_size=2000)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "qexport.cli", "cifar-bmp", str(made.root), "-o", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "train").is_dir() and any((out / "train").glob("*.bmp"))) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err  # interrupted, not finished
    assert "interrupted" in err.lower() or "abort" in err.lower(), err
    expected = expected_flat(made)
    got = files_under(out)
    assert 0 < len(got) < len(expected)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()} <= {"train", "test"}  # staging gone
    for rel, raw in got.items():
        assert rel in expected, rel  # no temporary file left behind
        fields, bgr = read_bmp_bgr(raw)
        assert fields["file_size"] == len(raw) == 3126  # complete
        np.testing.assert_array_equal(bgr, hwc(expected[rel][0])[:, :, ::-1])
