"""The data that crosses between pipeline stages: small frozen dataclasses holding numpy arrays.

    checkpoint --reader--> Model --plan--> QuantPlan --quantize--> QuantizedModel
        --encode--> EncodedModel (qexport.encode) --writer--> files

Nothing here imports torch.  Mappings are read-only views; arrays are never modified in place by
a later stage (readers may hand out memory-mapped, read-only arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from . import __version__

# Layer kinds a reader may report.
LAYER_KINDS = ("conv", "dwconv", "linear", "bn", "prelu")
# Quantization schemes.  "passthrough" = weights already integer codes in the checkpoint.
SCHEMES = ("float", "binary", "ternary", "affine", "passthrough")


def frozen_map(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Source:
    """Where a model came from.  Only the base name is kept: outputs never embed absolute paths."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Layer:
    """One parameterised layer of the graph.

    attrs (where the architecture defines them): in_channels, out_channels, kernel (tuple),
    stride, padding, groups, eps, affine, binary_input (input activations are binarized),
    bn (name of a BatchNorm directly after it, foldable), follows (tuple of the operations that
    come after it, e.g. ("relu", "avgpool2")).
    """

    name: str
    kind: str
    weight: str | None = None
    bias: str | None = None
    params: tuple[str, ...] = ()  # every tensor name belonging to the layer
    attrs: Mapping[str, Any] = field(default_factory=frozen_map)

    @property
    def follows(self) -> tuple[str, ...]:
        return tuple(self.attrs.get("follows", ()))


@dataclass(frozen=True)
class Model:
    """What a reader produces: ordered float tensors, the architecture and its layer graph."""

    arch: str
    tensors: Mapping[str, np.ndarray]
    layers: tuple[Layer, ...]
    source: Source
    config: Mapping[str, Any] = field(default_factory=frozen_map)  # e.g. infl_ratio, num_classes
    metadata: Mapping[str, Any] = field(default_factory=frozen_map)  # epoch, best_prec1, ...
    notes: tuple[str, ...] = ()  # warnings met while reading, shown on stderr
    integer_codes: bool = False  # weights already quantized: pass through, never re-quantize
    has_graph: bool = True  # False for the generic reader
    default_plan: Mapping[str, "LayerPlan"] = field(default_factory=frozen_map)  # set by the reader
    # Set by the graph stage (qexport.graph.stage, README "The network graph"): where the graph
    # comes from, what qexport assumed (documented architectures), your traced module's graph and
    # the module itself (opaque here: this module never imports torch).
    graph_origin: str = ""
    assumption: str = ""
    graph: Any = field(default=None, compare=False, repr=False)
    module: Any = field(default=None, compare=False, repr=False)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def parameter_count(self) -> int:
        return int(sum(a.size for a in self.tensors.values() if a.dtype.kind == "f"))


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is quantized.  bits: 32 for float, 1 binary, 2 ternary, 2..16 affine."""

    layer: str
    scheme: str
    bits: int = 32
    per_channel: bool = False
    alpha: bool = False  # binary: per-output-channel alpha = mean|W_c|
    fold_bn: bool = False  # affine: fold the following BN; binary: BN+sign -> integer thresholds


@dataclass(frozen=True)
class PlanOptions:
    """Every option of the plan/quantize stage, as given on the command line (None = default)."""

    bits: int | None = None
    per_channel: bool | None = None
    alpha: bool | None = None
    fold_bn: bool | None = None
    only: tuple[str, ...] = ()
    keep_float: tuple[str, ...] = ()
    mult_bits: int = 16
    input_gain: int = 256
    max_scale_error: float = 0.01
    zero_point: str = "round"  # or "truncate" (seed 002's original code)
    scale_shift: Mapping[str, tuple[int, int]] = field(default_factory=frozen_map)
    layer_bits: Mapping[str, int] = field(default_factory=frozen_map)  # GLOB -> bits, README "Plans"
    plan: str | None = None  # "seed": the architecture's own plan; None (and no bits): as trained


@dataclass(frozen=True)
class QuantPlan:
    layers: tuple[LayerPlan, ...]
    options: PlanOptions

    def for_layer(self, name: str) -> LayerPlan | None:
        for lp in self.layers:
            if lp.layer == name:
                return lp
        return None


@dataclass(frozen=True)
class ExportTensor:
    """One array every writer writes, with what a reader of the output needs to interpret it.

    role: weight | bias | bn | param | packed | threshold | flip | other
    scheme: float | binary | ternary | affine | int32 | passthrough
    layout: oihw | ohwi | oi | c (vector) | scalar | - ; packed arrays say so in attrs.
    attrs: e.g. packing ("word_bits", "bit_order", "n", "encoding"), "folded_bn".
    In a QuantizedModel the data are canonical: PyTorch order (4-D weights "oihw"), never packed;
    qexport.encode arranges them (layout, packing) for the writers.
    """

    name: str
    data: np.ndarray
    layer: str | None = None
    role: str = "other"
    scheme: str = "float"
    layout: str = "-"
    attrs: Mapping[str, Any] = field(default_factory=frozen_map)


@dataclass(frozen=True)
class QuantLayer:
    """Parameters of one quantized layer.  params values are numpy arrays: 0-d for a per-tensor
    value, shape (C,) for per-channel ones.  Keys used:

    affine:   scale (float32), zero_point (int32), multiplier (int32), shift (int32),
              scale_error (float64, relative), input_gain (int32)
    binary:   alpha (float32, if any) with multiplier/shift/scale_error for it, n (popcount length),
              threshold (int32) and flip (uint8) when BN is folded to thresholds
    ternary:  delta (float32), alpha (float32), multiplier/shift/scale_error for alpha, n
    """

    name: str
    kind: str
    scheme: str
    bits: int
    per_channel: bool
    weight: str | None  # name of the ExportTensor holding the codes
    bias: str | None = None
    params: Mapping[str, np.ndarray] = field(default_factory=frozen_map)
    attrs: Mapping[str, Any] = field(default_factory=frozen_map)


@dataclass(frozen=True)
class LayerReport:
    layer: str
    scheme: str
    bits: int
    sqnr_db: float | None = None
    max_abs_error: float | None = None
    saturated: int = 0
    zero_alpha_channels: int = 0
    binary_exact_zeros: int = 0
    empty_ternary_channels: int = 0
    scale_error: float | None = None  # worst relative error of the (m, s) pairs
    widened_channels: int = 0  # affine scales raised so m >> s and the int32 bias can hold them
    dead_channels: int = 0  # scales too small for any m >> s: exported as exact zero channels (m = 0)

    def as_dict(self) -> dict:
        """JSON-safe: non-finite floats (an all-zero signal's SQNR) become None."""
        out = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = None if isinstance(v, float) and not np.isfinite(v) else v
        return out


@dataclass(frozen=True)
class QuantizedModel:
    """What quantize produces: canonical codes (PyTorch order, unpacked) and every parameter."""

    model: Model
    plan: QuantPlan
    tensors: tuple[ExportTensor, ...]
    layers: tuple[QuantLayer, ...]
    report: tuple[LayerReport, ...] = ()
    notes: tuple[str, ...] = ()
    options_text: str = ""  # the export options, normalised, recorded in every output

    @property
    def arch(self) -> str:
        return self.model.arch

    def tensor(self, name: str) -> ExportTensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def quant_layer(self, name: str) -> QuantLayer:
        for q in self.layers:
            if q.name == name:
                return q
        raise KeyError(name)

    def provenance(self) -> dict[str, str]:
        """What every output records about how it was made.  No timestamps, no absolute paths."""
        return {
            "generator": f"qexport {__version__}",
            "source": self.model.source.name,
            "source_sha256": self.model.source.sha256,
            "arch": self.model.arch,
            **({"graph": self.model.graph_origin} if self.model.graph_origin else {}),
            **({"assumption": self.model.assumption} if self.model.assumption else {}),
            "options": self.options_text,
        }
