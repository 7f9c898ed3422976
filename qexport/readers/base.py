"""What a reader plugin is, and the machinery the documented-architecture readers share.

A reader is a `ReaderPlugin`: `detect(state)` says whether the state_dict keys and shapes fit (never
the file name), `build(checkpoint, detection)` returns a `Model` with its layer graph, and
`default_plan(model)` gives the per-layer schemes of the architecture's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..model import Layer, LayerPlan, Model, frozen_map

OPTIONAL_SUFFIXES = ("num_batches_tracked",)  # absent in checkpoints from old PyTorch


@dataclass(frozen=True)
class Detection:
    arch: str
    matches: bool
    score: float = 0.0  # 1.0 = exact key/shape match; the generic reader scores 0.01
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    wrong_shape: tuple[str, ...] = ()  # "key: got (..), expected (..)"
    config: Mapping[str, Any] = field(default_factory=frozen_map)

    def explain(self, limit: int = 6) -> str:
        parts = []
        for label, items in (("missing keys", self.missing), ("unexpected keys", self.unexpected),
                             ("wrong shapes", self.wrong_shape)):  # fmt: skip
            if items:
                shown = ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) or "keys fit"


@dataclass(frozen=True)
class ReaderPlugin:
    id: str
    description: str
    detect: Callable[[Mapping[str, np.ndarray]], Detection]
    build: Callable[..., Model]
    default_plan: Callable[[Model], dict[str, LayerPlan]]


def compare_keys(arch: str, state: Mapping[str, np.ndarray], expected: Mapping[str, tuple], config) -> Detection:
    """Exact-match rule: every expected key present with its shape, nothing unexpected.
    num_batches_tracked may be absent (old PyTorch)."""
    missing, wrong = [], []
    for key, shape in expected.items():
        if key not in state:
            if not key.endswith(OPTIONAL_SUFFIXES):
                missing.append(key)
        elif tuple(state[key].shape) != tuple(shape):
            wrong.append(f"{key}: got {tuple(state[key].shape)}, expected {tuple(shape)}")
    unexpected = [k for k in state if k not in expected]
    ok = not (missing or wrong or unexpected)
    hit = len(expected) - len(missing) - len(wrong)
    score = 1.0 if ok else max(0.0, hit / max(len(expected), 1) - 0.5 * len(unexpected) / max(len(state), 1))
    return Detection(arch, ok, score if ok else min(score, 0.99), tuple(missing), tuple(unexpected), tuple(wrong), frozen_map(config))


def shape_of(state: Mapping[str, np.ndarray], key: str) -> tuple[int, ...] | None:
    a = state.get(key)
    return None if a is None else tuple(a.shape)


def expected_shapes(arch: str, config: Mapping[str, Any]) -> dict[str, tuple]:
    """The state_dict layout of qexport's own torch module for `arch`, built on the meta device."""
    from ..models import build

    module = build(arch, dict(config), device="meta")
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def layers_from_module(arch: str, config: Mapping[str, Any], state: Mapping[str, np.ndarray],
                       annotate: Mapping[str, Mapping[str, Any]]) -> tuple[Layer, ...]:
    """Walk qexport's torch module for `arch` and describe every parameterised layer.

    `annotate` adds architecture knowledge the modules cannot express: what follows each layer,
    which BN it feeds, whether its input activations are binarized.
    """
    from torch import nn

    from ..models import build

    module = build(arch, dict(config), device="meta")
    layers = []
    for name, m in module.named_modules():
        attrs: dict[str, Any]
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels
            kind = "dwconv" if depthwise else "conv"
            attrs = dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel=tuple(m.kernel_size),
                         stride=tuple(m.stride), padding=tuple(m.padding), groups=m.groups)  # fmt: skip
        elif isinstance(m, nn.Linear):
            kind, attrs = "linear", dict(in_features=m.in_features, out_features=m.out_features)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            kind, attrs = "bn", dict(num_features=m.num_features, eps=float(m.eps), affine=bool(m.affine))
        elif isinstance(m, nn.PReLU):
            kind, attrs = "prelu", dict(num_parameters=m.num_parameters)
        else:
            continue
        attrs.update(annotate.get(name, {}))
        params = tuple(f"{name}.{p}" for p, _ in m.state_dict().items() if f"{name}.{p}" in state)
        weight = f"{name}.weight" if f"{name}.weight" in state else None
        bias = f"{name}.bias" if f"{name}.bias" in state else None
        layers.append(Layer(name=name, kind=kind, weight=weight, bias=bias, params=params, attrs=frozen_map(attrs)))
    return tuple(layers)


def build_model(arch: str, checkpoint, detection: Detection, annotate) -> Model:
    """A documented-architecture Model from a checkpoint whose keys matched."""
    from ..integer_weights import classify_integer_weights

    state = checkpoint.state
    layers = layers_from_module(arch, detection.config, state, annotate)
    integer_codes, state, notes = classify_integer_weights(state, checkpoint.source.name)
    return Model(
        arch=arch,
        tensors=frozen_map(state),
        layers=layers,
        source=checkpoint.source,
        config=detection.config,
        metadata=frozen_map(checkpoint.metadata),
        notes=tuple(checkpoint.notes) + tuple(notes),
        integer_codes=integer_codes,
    )


def plan_for(model: Model, names, scheme: str, bits: int, per_channel=False, alpha=False, fold_bn=False) -> dict[str, LayerPlan]:
    return {
        n: LayerPlan(layer=n, scheme=scheme, bits=bits, per_channel=per_channel, alpha=alpha, fold_bn=fold_bn)
        for n in names
    }


def weighted_layers(model: Model, kinds=("conv", "dwconv", "linear")) -> list[str]:
    return [layer.name for layer in model.layers if layer.kind in kinds and layer.weight]


def documented_reader(arch: str, description: str, infer_config, annotate, default_plan) -> ReaderPlugin:
    """The reader of a documented architecture: the exact-match rule on the key/shape layout that
    `infer_config(state)` implies, and the layer graph that `annotate(config)` describes."""

    def detect(state):
        cfg = infer_config(state)
        return compare_keys(arch, state, expected_shapes(arch, cfg), cfg)

    def build(checkpoint, detection):
        return build_model(arch, checkpoint, detection, annotate(detection.config))

    return ReaderPlugin(arch, description, detect, build, default_plan)
