"""fx nodes -> `Node`s (README "The network graph", "Ops").  Module leaves by type, functional
calls by target, the view/transpose/view channel-shuffle idiom as one op, opaque leaves by
behaviour (`probe`); dropout / identity / contiguous are dropped with a note; anything else is a
GraphError naming the node, the op, its source line and the supported ops.
"""

from __future__ import annotations

import copy

import torch.fx as fx
from torch import nn

from ..errors import GraphError
from . import functional as fn
from .ir import Node, supported_text
from .probe import behaves_like_sign, identify_weighted
from .trace import AutogradApply, call_site, module_source, torch_base

SIMPLE_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
DROPPED_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


class _Converter:
    def __init__(self, gm: fx.GraphModule, values: dict, where: str):
        self.gm, self.values, self.where = gm, values, where
        self.alias: dict[str, str] = {}  # fx node name -> graph node name (dropped nodes: their input)
        self.nodes: list[Node] = []
        self.names: set[str] = {"input"}
        self.notes: list[str] = []
        self.skip: set[str] = set()

    # -- helpers -----------------------------------------------------------------------------
    def fail(self, n: fx.Node, op: str, source: str, why: str = "is not supported") -> GraphError:
        return GraphError(f"{self.where}: node {n.name}: op {op} {why} (at {source or 'unknown source'}); "
                          f"{supported_text()}")  # fmt: skip

    def is_tensor(self, a) -> bool:
        return isinstance(a, fx.Node) and self.values.get(a.name, ("value",))[0] == "tensor"

    def shape(self, n: fx.Node) -> tuple[int, ...]:
        return self.values[n.name][1]

    def ref(self, a) -> str:
        return self.alias[a.name]

    def unique(self, name: str) -> str:
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def emit(self, n: fx.Node, name: str, op: str, inputs, attrs=None, params=None, source="", shape=None):
        shape = self.shape(n)[1:] if shape is None else shape
        name = self.unique(name)
        refs = tuple(i if isinstance(i, str) else self.ref(i) for i in inputs)
        self.nodes.append(Node(name, op, refs, shape, attrs or {}, params or {}, source))
        self.alias[n.name] = name
        return name

    def drop(self, n: fx.Node, what: str, source: str, label: str = ""):
        data = [a for a in n.args if self.is_tensor(a)]
        self.alias[n.name] = self.ref(data[0])
        if what != "contiguous":
            self.notes.append(f"dropped {what} {label or n.name} (a no-op in eval mode) at {source}")

    # -- fx node kinds -----------------------------------------------------------------------
    def run(self):
        output = None
        for n in self.gm.graph.nodes:
            if n.name in self.skip:
                continue
            if n.op == "placeholder":
                self.alias[n.name] = "input"
            elif n.op == "output":
                out = n.args[0]
                if not self.is_tensor(out):
                    raise self.fail(n, "output", "", "(returning other than one tensor) is not supported")
                output = self.ref(out)
            elif self.values.get(n.name, ("value",))[0] != "tensor":
                continue  # sizes and arithmetic on them: arguments of view/reshape, not data
            elif n.op == "call_module":
                self.module(n)
            elif n.op in ("call_function", "call_method"):
                self.function(n)
            else:  # get_attr: a parameter used as data
                raise self.fail(n, f"{n.op} {n.target}", call_site(n), "(a tensor used directly) is not supported")
        return tuple(self.nodes), output, tuple(self.notes)

    def module(self, n: fx.Node):
        path = str(n.target)
        m = self.gm.get_submodule(path)
        cls = type(m)
        torch_cls = torch_base(m)
        base = torch_cls or cls  # a user subclass that keeps torch's forward is that torch op
        site = call_site(n)
        source = f"{path} ({cls.__name__})" + (f" at {site}" if site else "")
        x = n.args[0] if n.args else None
        if not self.is_tensor(x) or len([a for a in (*n.args, *n.kwargs.values()) if isinstance(a, fx.Node)]) != 1:
            raise self.fail(n, cls.__name__, source, "(called with other than one tensor input) is not supported")
        p = lambda *roles: {r: f"{path}.{r}" for r in roles}  # noqa: E731
        if torch_cls is not None and issubclass(torch_cls, DROPPED_MODULES):
            return self.drop(n, cls.__name__, source, path)
        if base in SIMPLE_MODULES:
            return self.emit(n, path, SIMPLE_MODULES[base], [x], source=source)
        if base is nn.Conv2d:
            return self.emit(n, path, "conv2d", [x], fn.conv_attrs(m, self, n, source), p(*fn.weight_roles(m)), source)
        if base is nn.Linear:
            return self.emit(n, path, "linear", [x], {"binarize_input": False}, p(*fn.weight_roles(m)), source)
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # a subclass: what does its forward do?
            found = identify_weighted(m, self.shape(x))
            if found is None:
                raise self.fail(n, cls.__name__, f"{source}, class at {module_source(m)}",
                                "(a Conv2d/Linear subclass that computes neither the plain nor the binarized op) "
                                "is not supported")  # fmt: skip
            attrs = fn.conv_attrs(m, self, n, source) if isinstance(m, nn.Conv2d) else {}
            attrs["binarize_input"] = found["binarize_input"]
            if found["binarize_input"] or found["op"].startswith("binary_"):
                self.notes.append(f"{path} ({cls.__name__}) identified by behaviour as {found['op']}"
                                  f"{' with binarized input' if found['binarize_input'] else ''}")  # fmt: skip
            return self.emit(n, path, found["op"], [x], attrs, p(*fn.weight_roles(m)), source)
        if base in (nn.BatchNorm1d, nn.BatchNorm2d):
            if m.running_mean is None:
                raise self.fail(n, cls.__name__, source, "without running statistics is not supported")
            roles = (("weight", "bias") if m.affine else ()) + ("running_mean", "running_var")
            return self.emit(n, path, "batch_norm", [x], {"eps": float(m.eps), "affine": bool(m.affine)}, p(*roles), source)
        if base is nn.LeakyReLU:
            return self.emit(n, path, "leaky_relu", [x], {"negative_slope": float(m.negative_slope)}, source=source)
        if base is nn.PReLU:
            return self.emit(n, path, "prelu", [x], params=p("weight"), source=source)
        if base is nn.Hardtanh:
            return self.emit(n, path, "hardtanh", [x], {"min_val": float(m.min_val), "max_val": float(m.max_val)}, source=source)
        if base is nn.MaxPool2d:
            attrs = fn.max_pool_attrs(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
            return self.emit(n, path, "max_pool2d", [x], self.checked(n, attrs, source), source=source)
        if base is nn.AvgPool2d:
            attrs = fn.avg_pool_attrs(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
            return self.emit(n, path, "avg_pool2d", [x], self.checked(n, attrs, source), source=source)
        if base is nn.AdaptiveAvgPool2d:
            return self.emit(n, path, "adaptive_avg_pool2d", [x], {"output_size": tuple(self.shape(n)[2:])}, source=source)
        if base is nn.Flatten:
            return self.emit(n, path, "flatten", [x], fn.flatten_attrs(self.shape(x), m.start_dim, m.end_dim), source=source)
        if base in (nn.Softmax, nn.LogSoftmax):
            op = "softmax" if base is nn.Softmax else "log_softmax"
            return self.emit(n, path, op, [x], {"dim": fn.dim_attr(self.shape(x), m.dim)}, source=source)
        if not any(True for _ in m.parameters()) and torch_cls is None:
            if behaves_like_sign(copy.deepcopy(m), self.shape(x)):
                self.notes.append(f"{path} ({cls.__name__}) identified by behaviour as sign")
                return self.emit(n, path, "sign", [x], source=f"{source}, class at {module_source(m)}")
        where = source if cls.__module__.startswith("torch.nn.") else f"{source}, class at {module_source(m)}"
        raise self.fail(n, cls.__name__, where)

    def checked(self, n, attrs, source):
        if isinstance(attrs, str):
            raise self.fail(n, attrs, source)
        return attrs

    def function(self, n: fx.Node):
        target = n.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        stack = list((n.meta.get("nn_module_stack") or {}).values())
        owner = str(stack[-1][0]) if stack else ""
        site = call_site(n)
        source = (f"{owner} " if owner else "") + (f"at {site}" if site else "")
        label = (lambda base: f"{owner}.{base}" if owner else base)  # noqa: E731
        if isinstance(target, AutogradApply):
            x = n.args[0]
            if self.is_tensor(x) and behaves_like_sign(target, self.shape(x)):
                self.notes.append(f"{n.name}: autograd Function {target.fn_cls.__name__} identified by behaviour as sign")
                return self.emit(n, label(n.name), "sign", [x], source=source)
            raise self.fail(n, f"autograd Function {target.fn_cls.__name__}",
                            f"{source}, class at {module_source(target.fn_cls)}", "(not identified as sign) is not supported")
        if fn.is_shuffle_start(self, n):
            end, groups = fn.shuffle_chain(self, n)
            return self.emit(end, label("channel_shuffle"), "channel_shuffle", [n.args[0]], {"groups": groups}, source=source)
        gap = fn.global_mean(self, n, target)
        if gap is not None:  # x.mean((2, 3)): a global average pool (+ flatten without keepdim)
            keepdim, (c, _, _) = gap, self.shape(n.args[0])[1:]
            pooled = self.emit(n, label(n.name) + ("" if keepdim else ".pool"), "adaptive_avg_pool2d", [n.args[0]],
                               {"output_size": (1, 1)}, source=source, shape=(c, 1, 1))  # fmt: skip
            if not keepdim:
                self.emit(n, label(n.name), "flatten", [pooled], {"start_dim": 1, "end_dim": 3}, source=source)
            return None
        found = fn.translate(self, n, target, name)
        if found is None:
            raise self.fail(n, name, source)
        if found == "drop":
            return self.drop(n, name, source, label(n.name))
        op, inputs, attrs = found
        if isinstance(op, str) and op.startswith("!"):
            raise self.fail(n, name, source, op[1:])
        self.emit(n, label(n.name), op, inputs, attrs, source=source)


def convert(gm: fx.GraphModule, values: dict, where: str):
    """(nodes, output name, notes) of a traced GraphModule whose run recorded `values`."""
    return _Converter(gm, values, where).run()

