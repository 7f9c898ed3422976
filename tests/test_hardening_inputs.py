"""Hardening of the input side (issue 10): truncation at every byte, fuzzed checkpoint bytes,
unusual dtypes and shapes.  Expectation everywhere: a QexportError (one clear line in the CLI) or
success, never another exception, never code execution."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from fuzz_targets import checkpoint_seeds, checkpoint_target, cifar_seeds, cifar_target, mutated_checkpoint, mutated_cifar
from qexport.checkpoint import load_checkpoint
from qexport.errors import InputError
from qexport.export import load_model, plan_options_from, quantize

FUZZ_EXAMPLES = int(os.environ.get("QEXPORT_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, bytes]:
    return checkpoint_seeds(tmp_path_factory.mktemp("small"))


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_every_truncation_point_is_a_clean_error(kind, small, tmp_path):
    data = small[kind]
    for n in range(len(data)):
        (tmp_path / "t.pth").write_bytes(data[:n])
        with pytest.raises(InputError):
            load_checkpoint(tmp_path / "t.pth")
    assert load_checkpoint(_write(tmp_path / "full.pth", data)).state  # the untruncated file loads


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_truncated_checkpoints_through_the_real_cli(small, tmp_path):
    data = small["zip"]
    for n in (0, 1, 30, len(data) // 3, len(data) - 22, len(data) - 1):
        path = _write(tmp_path / f"t{n}.pth", data[:n])
        r = run_cli("inspect", path)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and f"t{n}.pth" in r.stderr
        assert "Traceback" not in r.stderr


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_checkpoint_bytes(small, tmp_path_factory, data):
    """Mutated checkpoints (byte flips, splices, truncations) and random bytes: clean error or
    success.  The same target runs longer from `python benchmarks/fuzz.py`."""
    blob = data.draw(mutated_checkpoint(small))
    # Any other exception propagates out of the target and fails the test.
    assert checkpoint_target(blob, tmp_path_factory.mktemp("fz") / "f.pth") in ("ok", "error")


def test_checkpoint_target_tells_success_from_error(small, tmp_path):
    """The fuzz target is not vacuous: real checkpoints come back "ok", garbage "error"."""
    assert checkpoint_target(small["zip"], tmp_path / "zip.pth") == "ok"
    assert checkpoint_target(small["legacy"], tmp_path / "legacy.pth") == "ok"
    assert checkpoint_target(small["zip"][:100], tmp_path / "cut.pth") == "error"
    assert checkpoint_target(b"\x80\x02}q\x00.", tmp_path / "empty.pth") == "error"


@pytest.fixture(scope="module")
def cifar_pickles() -> dict:
    return cifar_seeds()


def test_cifar_seeds_parse(cifar_pickles):
    """The fuzz seeds are real CIFAR pickles: unmutated, every one parses."""
    assert {cifar_target(role, raw) for role, raw in cifar_pickles.values()} == {"ok"}


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_cifar_pickle_bytes(cifar_pickles, data):
    """Mutated CIFAR-10/100 batch and meta pickles (flips, inserts, deletes, truncations) and random
    bytes through the restricted unpickler and validation: clean error or success."""
    role, blob = data.draw(mutated_cifar(cifar_pickles))
    assert cifar_target(role, blob) in ("ok", "error")  # anything else raised fails the test


def test_cifar_pickle_with_a_huge_memo_index_stays_small():
    """Regression (found by the CIFAR fuzz target): LONG_BINPUT n in a 30-byte pickle made the C
    unpickler allocate and zero 2n memo slots: 512 MB here, 32 GB (the OOM killer) for n = 2**31."""
    blob = b"\x80\x02}(U\x04datar" + (2**25).to_bytes(4, "little") + b"U\x01xu."
    code = (f"import re\nfrom qexport import cifar\nfrom qexport.errors import InputError\n"
            f"try:\n    cifar.parse_batch({blob!r}, 'data_batch_1', cifar.CIFAR10)\n"
            f"except InputError as exc:\n    print(exc)\n"
            f"print(re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read()).group(1))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    message, peak_kib = out.strip().splitlines()  # peak resident memory of that process (not inherited)
    assert message == "data_batch_1: 'data' is a bytes, expected a uint8 array of shape (N, 3072)"
    assert int(peak_kib) < 200_000


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_converted_with_a_note(dtype, tmp_path):
    w = torch.randn(4, 3, dtype=torch.float64).to(dtype)
    torch.save({"l.weight": w, "l.bias": torch.zeros(4, dtype=dtype)}, tmp_path / "d.pt")
    model = load_model(tmp_path / "d.pt")
    assert model.tensors["l.weight"].dtype == np.float32
    np.testing.assert_array_equal(model.tensors["l.weight"], w.float().numpy())
    assert any("converted to float32" in n for n in model.notes)


def test_int64_weights_refused_unless_codes(tmp_path):
    torch.save({"l.weight": torch.tensor([[1, 2], [3, 1 << 40]])}, tmp_path / "big.pt")
    r = run_cli("inspect", tmp_path / "big.pt")
    assert r.returncode == 1 and "'l.weight'" in r.stderr and "not quantized codes" in r.stderr
    torch.save({"l.weight": torch.tensor([[1, 2], [3, 255]])}, tmp_path / "codes.pt")
    model = load_model(tmp_path / "codes.pt")
    assert model.integer_codes and model.tensors["l.weight"].dtype == np.int32


@pytest.mark.parametrize(
    "tensor, expected",
    [
        (torch.zeros(0, 3), "has no elements"),
        (torch.ones(1).expand(10**5, 10**5), "declares 10000000000 elements"),
        (torch.tensor([1.0, float("nan")]), "non-finite"),
    ],
)
def test_degenerate_tensors(tensor, expected, tmp_path):
    torch.save({"x.weight": tensor}, tmp_path / "x.pt")
    r = run_cli("inspect", tmp_path / "x.pt")
    assert r.returncode == 1 and expected in r.stderr and "x.pt" in r.stderr


def test_zero_dim_tensors_are_kept(tmp_path):
    torch.save({"x.weight": torch.randn(2, 2), "temperature": torch.tensor(0.5)}, tmp_path / "x.pt")
    qm = quantize(load_model(tmp_path / "x.pt"), plan_options_from(bits=8))
    assert qm.tensor("temperature").data.shape == () and float(qm.tensor("temperature").data) == 0.5


def test_zip_that_is_not_a_checkpoint(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pth", "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    r = run_cli("inspect", tmp_path / "z.pth")
    assert r.returncode == 1 and "z.pth" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_zip64_locator_claiming_many_disks(small, tmp_path):
    """Regression (found by the fuzz target in CI): zipfile.is_zipfile raises BadZipFile itself
    when a ZIP64 locator claims the archive spans several disks."""
    blob = bytearray(small["zip"])
    at = blob.rfind(b"PK\x06\x07")
    assert at > 0, "torch's zip writer emits a ZIP64 end locator"
    blob[at + 16 : at + 20] = (2).to_bytes(4, "little")  # total number of disks
    path = _write(tmp_path / "disks.pth", bytes(blob))
    with pytest.raises(InputError, match="disks.pth"):
        load_checkpoint(path)
    r = run_cli("inspect", path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
