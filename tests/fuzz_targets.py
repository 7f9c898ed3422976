"""Fuzz targets shared by the CI tests (bounded budget) and `benchmarks/fuzz.py` (longer runs).

A target returns normally when qexport either succeeded or raised a QexportError (a clean,
one-line error); any other exception is a bug and propagates."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from qexport.errors import QexportError


def mutated_checkpoint(seeds: dict[str, bytes]):
    """Byte flips, truncations and splices of small real checkpoints, or random bytes."""

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(sorted(seeds) + ["random"]))
        if kind == "random":
            return draw(st.binary(max_size=2048))
        blob = bytearray(seeds[kind])
        for _ in range(draw(st.integers(1, 8))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            blob = blob[: draw(st.integers(0, len(blob)))]
        return bytes(blob)

    return build()


# ------------------------------------------------------------------------------------------------
# CIFAR pickles

# What a CIFAR file is read as: the kind (cifar.CIFAR10 / CIFAR100 name) and batch or meta.
CIFAR_ROLES = ("cifar-10 batch", "cifar-10 meta", "cifar-100 batch", "cifar-100 meta")


def checkpoint_seeds(folder: Path) -> dict[str, bytes]:
    """Small real checkpoints, saved into `folder`: one in the zip format, one in the legacy one."""
    import torch

    torch.manual_seed(0)
    torch.save({"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3)}, folder / "zip.pth")
    torch.save({"a.weight": torch.randn(3, 2)}, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    return {"zip": (folder / "zip.pth").read_bytes(), "legacy": (folder / "legacy.pth").read_bytes()}


def cifar_seeds() -> dict[str, tuple[str, bytes]]:
    """Small real CIFAR pickles, written as cPickle wrote the official files (tests/cifar_data.py):
    name -> (role, bytes).  Two images per batch keep the pickle structure a large part of it."""
    import numpy as np
    from cifar_data import CIFAR10_NAMES, CIFAR100_COARSE, CIFAR100_FINE, cifar10_batch, py2_pickle

    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    c100 = {b"filenames": [b"a.png", b"b.png"], b"batch_label": b"training batch 1 of 1",
            b"fine_labels": [3, 99], b"coarse_labels": [3, 19], b"data": data}  # fmt: skip
    return {
        "c10_batch": ("cifar-10 batch", py2_pickle(cifar10_batch(data, [1, 9], "training batch 1 of 5"))),
        "c10_batch_str_keys": ("cifar-10 batch", py2_pickle(cifar10_batch(data, [0, 2], "t", str_keys=True))),
        "c10_meta": ("cifar-10 meta", py2_pickle({b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                                  b"label_names": [n.encode() for n in CIFAR10_NAMES]})),
        "c100_batch": ("cifar-100 batch", py2_pickle(c100)),
        "c100_meta": ("cifar-100 meta", py2_pickle({b"fine_label_names": [n.encode() for n in CIFAR100_FINE],
                                                    b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE]})),
    }  # fmt: skip


def mutated_cifar(seeds: dict[str, tuple[str, bytes]]):
    """(role, bytes): byte flips (half of them in the pickle structure around the image bytes),
    inserted and deleted bytes, truncations of the seeds, or random bytes read in any role."""

    @st.composite
    def build(draw):
        name = draw(st.sampled_from(sorted(seeds) + ["random"]))
        if name == "random":
            return draw(st.sampled_from(CIFAR_ROLES)), draw(st.binary(max_size=4096))
        role, raw = seeds[name]
        blob = bytearray(raw)
        for _ in range(draw(st.integers(1, 8))):
            n = len(blob)
            if not n:
                break
            head, tail = st.integers(0, min(n, 256) - 1), st.integers(max(0, n - 512), n - 1)  # the structure
            at = draw(st.one_of(st.integers(0, n - 1), head, tail))
            op = draw(st.sampled_from(("set", "set", "insert", "delete")))
            if op == "set":
                blob[at] = draw(st.integers(0, 255))
            elif op == "insert":
                blob[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                del blob[at : at + draw(st.integers(1, 8))]
        if draw(st.booleans()):
            blob = blob[: draw(st.integers(0, len(blob)))]
        return role, bytes(blob)

    return build()


def cifar_target(role: str, blob: bytes) -> str:
    """Parse `blob` as `role` with the converter's restricted unpickler and validation; on success
    encode its images (or make its class names folder-safe) as `cifar-bmp` would."""
    from qexport import cifar

    kind = cifar.CIFAR10 if role.startswith("cifar-10 ") else cifar.CIFAR100
    try:
        if role.endswith("meta"):
            for names in cifar.parse_meta(blob, "fuzz", kind).values():
                cifar.folder_names(names, "fuzz")
        else:
            batch = cifar.parse_batch(blob, "fuzz", kind)
            images = cifar.encode_bmp_batch(batch.data)
            assert len(images) == len(batch.data)
    except QexportError:
        return "error"
    return "ok"


def checkpoint_target(blob: bytes, path: Path) -> str:
    from qexport.checkpoint import load_checkpoint
    from qexport.export import load_model, plan_options_from, quantize

    path.write_bytes(blob)
    try:
        load_checkpoint(path)
    except QexportError:
        return "error"
    try:  # it loaded: the rest of the pipeline must cope too
        quantize(load_model(path), plan_options_from(bits=8))
    except QexportError:
        return "error"
    return "ok"
