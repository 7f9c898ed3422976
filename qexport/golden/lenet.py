"""LeNet (seed 002): the stages of the integer reference pass `lenet_forward_int` (affine plan).

`input` (uint8 codes, N x 1 x 28 x 28), `c1` (requantized, before ReLU), `s2` (ReLU + 2x2 average
pool, round half up), `c3`, `s4`, `c5`, `f6`, `output` (int64 in 1/G units), `prediction` (argmax
of output) and `label` when the input has labels.
"""

from __future__ import annotations

import numpy as np

from ..model import QuantizedModel
from .stages import Golden, Inputs, Stage, add_labels


def lenet_graph_difference(model) -> str | None:
    """None when the model's graph is seed 002's LeNet graph (same ops, attributes, parameter names
    and shapes: what the integer pass computes), else the first difference, for the refusal."""
    from ..graph.stage import documented_graph, model_graph

    if model.graph is None:  # a documented architecture's own graph (no tracing needed to decide)
        return None if model.arch == "lenet" else f"the graph of {model.arch}"
    graph, lenet = model_graph(model), documented_graph("lenet")
    for mine, ref in zip(graph.nodes, lenet.nodes):
        if mine.op != ref.op:
            return f"node {mine.name} is {mine.op} where seed 002's LeNet has {ref.op} ({ref.name})"
        if dict(mine.params) != dict(ref.params):
            return f"node {mine.name} uses {', '.join(mine.params.values()) or 'no parameters'} where seed 002's " \
                   f"LeNet's {ref.name} uses {', '.join(ref.params.values()) or 'none'}"
        if (dict(mine.attrs), mine.output_shape) != (dict(ref.attrs), ref.output_shape):
            return f"node {mine.name} ({mine.op}) differs from seed 002's LeNet's {ref.name} in its attributes or shape"
    if len(graph.nodes) != len(lenet.nodes):
        return f"{len(graph.nodes)} nodes where seed 002's LeNet has {len(lenet.nodes)}"
    return None


def lenet_golden(qmodel: QuantizedModel, inputs: Inputs) -> Golden:
    from ..errors import PlanError
    from ..quantize.reference import LENET_STAGES, lenet_forward_int

    schemes = {q.name: q.scheme for q in qmodel.layers}
    not_affine = [f"{n} ({schemes.get(n, 'float')})" for n in ("c1", "c3", "c5", "f6", "output")
                  if schemes.get(n) != "affine"]  # fmt: skip
    if not_affine:
        raise PlanError(f"{qmodel.model.source.name}: the LeNet integer pass needs every layer affine; "
                        f"{', '.join(not_affine)} are not (drop --keep-float/--only, use --bits 3..16)")
    acts = lenet_forward_int(qmodel, inputs.images)
    gain = int(qmodel.plan.options.input_gain)
    stages = [Stage("input", inputs.images, "input codes x (x/G stands for the pixel), uint8", "NCHW")]
    what = {"c1": "conv c1 requantized (acc*m)>>s, before ReLU", "s2": "ReLU then 2x2 average pool (sum+2)>>2",
            "c3": "conv c3 requantized, before ReLU", "s4": "ReLU then 2x2 average pool (sum+2)>>2",
            "c5": "conv c5 requantized (no ReLU)", "f6": "linear f6 requantized (no ReLU)",
            "output": "linear output requantized: logits"}  # fmt: skip
    for name in LENET_STAGES:
        a = acts[name]
        stages.append(Stage(name, a, f"{what[name]}; int64 in 1/{gain} units", "NCHW" if a.ndim == 4 else "NC",
                            layer=None if name in ("s2", "s4") else name))  # fmt: skip
    pred = acts["output"].argmax(axis=1).astype(np.int64)
    stages.append(Stage("prediction", pred, "argmax of output (first maximum)", "N"))
    g = Golden("lenet-integer", stages, inputs)
    add_labels(g, pred)
    return g
