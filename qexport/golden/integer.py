"""Golden vectors of the integer graph (README "Integer inference"): the uint8 codes of every
node for the given inputs, with each tensor's scale and zero point, and the prediction (argmax of
the last node's codes)."""

from __future__ import annotations

import numpy as np

from .stages import Golden, Inputs, Stage, add_labels


def integer_golden(igraph, inputs: Inputs, calibration) -> Golden:
    from ..integer.run import run_integer

    codes = run_integer(igraph, inputs.images)
    zp_in = igraph.input
    stages = [Stage("input", inputs.images, f"input pixels, uint8; value (p - {zp_in.zero_point}) * {zp_in.scale:.9g}",
                    "NCHW", attrs={"scale": zp_in.scale, "zero_point": zp_in.zero_point})]  # fmt: skip
    for node in igraph.nodes:
        a = codes[node.name]
        attrs = {"op": node.op, "scale": node.out.scale, "zero_point": node.out.zero_point,
                 "computes": list(node.source or (node.name,))}  # fmt: skip
        if "acc_bits" in node.attrs:
            attrs["acc_bits"] = node.attrs["acc_bits"]
        stages.append(Stage(node.name, a, f"{node.op} of {', '.join(node.inputs)}: uint8 codes, value "
                                          f"(q - {node.out.zero_point}) * {node.out.scale:.9g}",
                            "NCHW" if a.ndim == 4 else "NC", attrs=attrs))  # fmt: skip
    pred = codes[igraph.output].reshape(inputs.images.shape[0], -1).argmax(axis=1).astype(np.int64)
    stages.append(Stage("prediction", pred, "argmax of the last node's codes (first maximum)", "N"))
    notes = [f"integer graph calibrated on {calibration.samples} image(s)"
             + (f", {calibration.percentile}th percentile ranges" if calibration.percentile else ", min/max ranges")]
    g = Golden("integer-graph", stages, inputs, notes)
    add_labels(g, pred)
    return g
