"""Calibration: the range of every node's output over real inputs, measured on the float network
the plan stands for (qexport.integer.network), in float64.

    cal = calibrate(qmodel, images, mean=(0.5,), std=(0.5,), samples=256, percentile=None)
    cal.ranges["c1"]   # (lo, hi) of node c1's output

Inputs are uint8 pixels; the float input is (pixel / 255 - mean) / std per channel, as the model
was trained.  min/max by default; `percentile` P (e.g. 99.99) takes the P-th and (100-P)-th
percentiles of each node's values over all samples instead (clipping rare outliers).  Batches
are fixed (BATCH images) and the reduction is exact (min/max) or over all values at once
(percentile), so the result is the same on every run and machine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import UsageError
from ..graph.execute import run_graph
from ..model import QuantizedModel, frozen_map
from .network import planned_network

BATCH = 32


@dataclass(frozen=True)
class Calibration:
    ranges: Mapping[str, tuple[float, float]]  # node name ("input" included) -> (lo, hi)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    samples: int
    percentile: float | None = None
    notes: tuple[str, ...] = field(default=())


def normalised(images: np.ndarray, mean, std) -> np.ndarray:
    """(pixel / 255 - mean) / std per channel, float64."""
    x = np.asarray(images, np.float64) / 255.0
    c = x.shape[1]
    m = np.broadcast_to(np.asarray(mean, np.float64), (c,)).reshape(1, c, 1, 1)
    s = np.broadcast_to(np.asarray(std, np.float64), (c,)).reshape(1, c, 1, 1)
    return (x - m) / s


def calibrate(qmodel: QuantizedModel, images: np.ndarray, mean=(0.0,), std=(1.0,), samples: int | None = None,
              percentile: float | None = None, progress: bool | None = None) -> Calibration:  # fmt: skip
    if percentile is not None and not 50.0 < percentile <= 100.0:
        raise UsageError(f"--percentile {percentile}: give a value in (50, 100], e.g. 99.99")
    graph, state = planned_network(qmodel)
    images = np.asarray(images)
    if samples is not None:
        images = images[:samples]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(graph.input_shape):
        raise UsageError(f"calibration images are {tuple(images.shape[1:])}, the network takes {graph.input_shape}")
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    kept: dict[str, list[np.ndarray]] = {}
    starts = range(0, images.shape[0], BATCH)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(len(starts)) if show else None
    for i in starts:
        values = run_graph(graph, state, normalised(images[i:i + BATCH], mean, std))
        for name, v in values.items():
            if percentile is None:
                lo[name] = min(lo.get(name, np.inf), float(v.min()))
                hi[name] = max(hi.get(name, -np.inf), float(v.max()))
            else:
                kept.setdefault(name, []).append(v.ravel())
        if bar:
            bar.update(1)
    if bar:
        bar.render_finish()
    if percentile is not None:
        for name, parts in kept.items():
            allv = np.concatenate(parts)
            lo[name], hi[name] = (float(np.percentile(allv, 100.0 - percentile)), float(np.percentile(allv, percentile)))
    ranges = frozen_map({name: (lo[name], hi[name]) for name in lo})
    return Calibration(ranges, tuple(np.atleast_1d(mean).tolist()), tuple(np.atleast_1d(std).tolist()),
                       int(images.shape[0]), percentile)  # fmt: skip


def _progress(total: int):
    import click

    bar = click.progressbar(length=total, label="qexport: calibrating", file=sys.stderr)
    bar.render_progress()
    return bar


def calibrated_graph(qmodel: QuantizedModel, calibration_data, calibration_samples: int = 256,
                     percentile: float | None = None, mean: str | None = None, std: str | None = None):
    """(IntGraph, Calibration, mean, std) from the CLI's calibration options: load the images, parse
    the normalisation, fold a per-channel std into the input's readers, calibrate, lower (its notes
    on stderr)."""
    from ..data import load_data, parse_normalisation
    from ..export import print_notes
    from ..graph.stage import network_input_shape
    from .fold_input import fold_input_std
    from .lower import lower

    if not calibration_data:
        raise UsageError("give --calibrate DATA: the integer graph's activation ranges come from real images")
    shape = network_input_shape(qmodel.model)
    m, s = parse_normalisation(mean, std, shape[0])
    images = load_data(calibration_data, channels=shape[0], size=tuple(shape[1:]), limit=calibration_samples).images
    qmodel, folded_std = fold_input_std(qmodel, s)  # a per-channel std goes into the input's readers
    cal = calibrate(qmodel, images, m, folded_std, percentile=percentile)
    igraph = lower(qmodel, cal)
    print_notes(igraph.notes)
    return igraph, cal, m, s
