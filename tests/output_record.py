"""A matrix of exports whose bytes are recorded (sha256 per file) so that a refactor can prove it
changes no output: `python tests/output_record.py --write` records, tests/test_output_record.py
compares.  Checkpoints are the fixed-seed states of tests/conftest.py (small configurations where
the architecture allows it), so the record is reproducible on this machine kind."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD = HERE / "data" / "output_sha256.json"

# (arch, config) of each checkpoint in the matrix; lenet also as the bundled fixture.
MODELS = {
    "lenet": ("lenet", {}),
    "vgg": ("vgg_cifar10_binary", {"infl_ratio": 1, "classifier": "single"}),
    "twn": ("twn_nin_gc", {}),
    "resnet": ("resnet18_bnn", {"num_classes": 10}),
    "mobilenet": ("mobilenet_v1", {"num_classes": 10}),
}

ALL_WRITERS = ("mat", "txt", "npy", "h5", "cheader", "onnx", "mem")
# Plan/encoding option sets, each applied with every writer (writer options below added per writer).
OPTION_SETS = {
    "default": {},  # as trained: nothing quantized
    "seed": {"plan": "seed"},  # the documented architecture's own plan
    "default-ohwi": {"layout": "ohwi"},
    "bits8": {"bits": 8},
    "bits4-pt": {"bits": 4, "per_channel": False},
    "bits1": {"bits": 1},
    "bits1-noalpha": {"bits": 1, "alpha": False},
    "bits2": {"bits": 2},
    "bits2-codes-w8": {"bits": 2, "pack": True, "ternary_pack": "codes", "word_bits": 8},
    "bits2-base3": {"bits": 2, "pack": True, "ternary_pack": "base3"},
    "bits1-ohwi-w64": {"bits": 1, "pack": True, "layout": "ohwi", "word_bits": 64},
    "ohwi": {"plan": "seed", "layout": "ohwi"},
    "nopack": {"plan": "seed", "pack": False},
    "nofold": {"plan": "seed", "fold_bn": False},
}
WRITER_VARIANTS = {
    "mat": [{}, {"split": True, "matlab_order": True}],
    "txt": [{}, {"per_row": True, "hex": True}],
    "npy": [{}, {"npz": True}],
    "h5": [{}],
    "cheader": [{}, {"hex": True, "prefix": "NET", "split_source": True}],
    "onnx": [{}],
    "mem": [{}, {"format": "coe"}, {"format": "mif", "mem_width": 32}],
}
# Which (model, option set) pairs run: every option set on the small models, a few on the big ones.
SMALL = ("lenet", "twn", "mobilenet")
BIG_SETS = ("default", "seed", "bits8", "bits1-ohwi-w64")
GOLDEN = [("lenet", "default", "npy"), ("lenet", "default", "mem"), ("lenet", "default", "cheader"),
          ("vgg", "default", "npy"), ("vgg", "default", "mem"), ("resnet", "default", "cheader")]


def cases():
    for model in MODELS:
        sets = OPTION_SETS if model in SMALL else BIG_SETS
        for set_name in sets:
            for writer in ALL_WRITERS:
                for i, wopts in enumerate(WRITER_VARIANTS[writer]):
                    if model not in ("lenet",) and i > 0 and set_name not in ("seed", "bits1"):
                        continue  # writer variants: all on lenet, two option sets elsewhere
                    yield f"{model}/{set_name}/{writer}/{i}", model, set_name, writer, wopts


def make_checkpoints(folder: Path, needed=None) -> dict[str, Path]:
    import torch

    sys.path.insert(0, str(HERE))
    from conftest import LENET, make_state

    paths = {"lenet": LENET}
    for key, (arch, config) in MODELS.items():
        if key == "lenet" or (needed is not None and key not in needed):
            continue
        path = folder / f"{key}.pth"
        torch.save(make_state(arch, config), path)
        paths[key] = path
    return paths


def digest(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    return {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def summary(files: dict[str, str] | str) -> str:
    """One line per case: the file count and the sha256 of the sorted `name sha256` lines (an
    error case keeps its message)."""
    if isinstance(files, str):
        return files
    text = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return f"{len(files)} files sha256 {hashlib.sha256(text.encode()).hexdigest()}"


def run_case(ckpt: Path, set_name: str, writer: str, wopts: dict, out: Path) -> dict[str, str] | str:
    from qexport.errors import QexportError
    from qexport.export import export

    try:
        outs, _ = export(writer, ckpt, out, writer_options=dict(wopts), **OPTION_SETS[set_name])
    except QexportError as exc:  # a refusal is recorded too: it must stay the same refusal
        return f"error: {exc}"
    result = {}
    for p in outs:
        result.update({f"{p.name}/{k}" if p.is_dir() else k: v for k, v in digest(p).items()})
    return result


def run_golden(ckpt: Path, model: str, fmt: str, out: Path):
    import numpy as np

    from qexport.golden import golden

    if model == "lenet":
        golden(ckpt, (), out, fmt, samples=3)
    else:  # three fixed-seed CIFAR-sized images
        images = out.parent / f"{out.name}_images.npy"
        np.save(images, np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
        golden(ckpt, (str(images),), out, fmt)
    return digest(out)


def compute(selected=None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        needed = None if selected is None else {c.split("/")[1] if c.startswith("golden/") else c.split("/")[0]
                                                 for c in selected}  # fmt: skip
        ckpts = make_checkpoints(tmp, needed)
        result = {}
        for n, (case, model, set_name, writer, wopts) in enumerate(cases()):
            if selected is not None and case not in selected:
                continue
            out = tmp / f"out{n}" / f"{model}{'.h' if writer == 'cheader' else ''}"
            out.parent.mkdir()
            result[case] = summary(run_case(ckpts[model], set_name, writer, wopts, out))
        for model, set_name, fmt in GOLDEN:
            case = f"golden/{model}/{set_name}/{fmt}"
            if selected is not None and case not in selected:
                continue
            result[case] = summary(run_golden(ckpts[model], model, fmt, tmp / case.replace("/", "_")))
        return result


if __name__ == "__main__":
    data = compute()
    if "--write" in sys.argv:
        RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(data)} cases in {RECORD}")
    else:
        print(json.dumps(data, indent=1, sort_keys=True))
