"""The op registry: what each node type means.

For every op, netgraph knows its parameters (with types and defaults), how
many inputs it takes, how to build it as a torch module (or emit it as a plain
function call in the generated ``forward``), the shape it outputs and its
multiply-accumulates per image. Shapes are per image, without the batch:
``(channels, height, width)`` for maps and ``(features,)`` for flat vectors.

Register your own op with :func:`register_op`; see README.md, "Your own op".
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from netgraph.core.errors import RecipeError
from netgraph.core.registry import Part, Registry
from netgraph.core.schema import FLOAT32_MAX, MAX_INT, REQUIRED, Param, as_param, check_params  # noqa: F401 (ops.Param etc. for plugins)

Shape = Tuple[int, ...]


def _same_shape(in_shapes, **_):
    return tuple(in_shapes[0])


@dataclass(frozen=True)
class OpSpec(Part):
    """Everything netgraph knows about one op: a Part whose ``function`` builds its module,
    ``function(in_shapes, **params)`` (None for an op emitted as a plain call), with the op's
    own rules beside it."""

    inputs: Union[int, str] = 1  # 0, 1, or "many" (two or more)
    shape: Callable[..., Shape] = _same_shape  # shape(in_shapes, **params)
    emit: Optional[Callable] = None  # emit(fx_graph, inputs, name, **params) -> fx.Node
    macs: Optional[Callable[..., int]] = None  # macs(in_shapes, out_shape, **params)
    kind: str = ""  # what passes match on: "conv", "norm", "activation", "pool", ...
    monotonic: bool = False  # non-decreasing element-wise function: commutes with max-pool
    builtin: bool = False
    # (input shapes, parameters) -> (trainable, frozen): a network repeats its layers (8,192
    # equal convs: 3.4 s of summary uncached); an op registered again is a new record
    _counts: Dict[tuple, Tuple[int, int, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def validate(self, raw: Dict[str, Any]) -> Dict[str, Any]:
        """The full parameter dict (defaults filled in), or a RecipeError."""
        return check_params(f"op '{self.name}'", self.params, raw)

    def check_inputs(self, n: int) -> None:
        if self.inputs == "many":
            if n < 2:
                raise RecipeError(
                    f"op '{self.name}' takes two or more inputs, got {n}", hint="list them with in: [a, b]"
                )
        elif n != self.inputs:
            raise RecipeError(
                f"op '{self.name}' takes {self.inputs} input{'s' if self.inputs != 1 else ''}, got {n}"
            )

    def build(self, in_shapes: List[Shape], params: Dict[str, Any]) -> Optional[nn.Module]:
        return None if self.function is None else self.function(in_shapes, **params)

    def count_params(self, in_shapes: List[Shape], params: Dict[str, Any]) -> Tuple[int, int]:
        """(trainable, frozen) parameters, counted on a module built on the meta device,
        so even a huge layer costs no memory."""
        return self._sizes(in_shapes, params)[:2]

    def count_bytes(self, in_shapes: List[Shape], params: Dict[str, Any]) -> int:
        """Bytes of the module's parameters and buffers (batch norm's running statistics), as
        compile_graph would allocate them: counted on the meta device, like count_params."""
        return self._sizes(in_shapes, params)[2]

    def _sizes(self, in_shapes: List[Shape], params: Dict[str, Any]) -> Tuple[int, int, int]:
        """(trainable, frozen, bytes), cached: a network repeats its layers (8,192 equal convs:
        3.4 s of summary uncached)."""
        if self.function is None:
            return 0, 0, 0
        key = (tuple(map(tuple, in_shapes)), repr(sorted(params.items())))
        if key not in self._counts:
            with torch.device("meta"):
                m = self.build(in_shapes, params)
            assert m is not None  # self.function is not None
            counts = [0, 0, 0]
            for p in m.parameters():
                counts[not p.requires_grad] += p.numel()
            for t in [*m.parameters(), *m.buffers()]:
                counts[2] += t.numel() * t.element_size()
            self._counts[key] = (counts[0], counts[1], counts[2])
        return self._counts[key]

    def count_macs(self, in_shapes: List[Shape], out_shape: Shape, params: Dict[str, Any]) -> int:
        if self.macs is not None:
            return int(self.macs(in_shapes, out_shape, **params))
        if self.function is None:
            return 0
        return _macs_by_flop_counter(self, in_shapes, params)


def _macs_by_flop_counter(spec: OpSpec, in_shapes, params) -> int:
    """Multiply-accumulates of one image through a user op, from torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = spec.build(in_shapes, params)
        assert m is not None  # count_macs calls this only for an op with a module
        xs = [torch.empty((1,) + tuple(s)) for s in in_shapes]
    counter = FlopCounterMode(display=False)
    with counter:
        m(*xs)
    return counter.get_total_flops() // 2


OPS = Registry("op", "ops", "netgraph.register_op", OpSpec)


def get_op(name: str) -> OpSpec:
    return OPS.lookup(name)


def register_op(
    name: str,
    *,
    params: Optional[Dict[str, Any]] = None,
    inputs=1,
    shape: Optional[Callable] = None,
    macs: Optional[Callable] = None,
    kind: str = "",
    monotonic: bool = False,
    replace: bool = False,
):
    """Register a new op; decorate the function that builds its module.

    ``params`` maps each parameter to a type (required) or a default value
    (optional, typed by the default) or a :class:`Param`. The builder is called
    as ``builder(in_shapes, **params)`` and returns an ``nn.Module`` whose
    ``forward`` takes the op's inputs. ``shape(in_shapes, **params)`` gives the
    output shape (default: the shape of the first input) and
    ``macs(in_shapes, out_shape, **params)`` the multiply-accumulates per image
    (default: counted by ``torch.utils.flop_counter`` on the meta device).
    ``kind`` tells passes what the op is ("activation", "norm", "conv", "pool");
    ``monotonic=True`` declares an element-wise non-decreasing function, which
    lets ``swap_pool_activation`` move a max-pool before it::

        @netgraph.register_op("swish", params={"beta": 1.0})
        def swish(in_shapes, beta):
            return Swish(beta)
    """

    def decorator(builder):
        shape_of = _meta_shape(name, builder, shape)
        OPS.register(
            name,
            builder,
            params=params,
            replace=replace,
            inputs=inputs,
            shape=shape_of,
            macs=macs,
            kind=kind,
            monotonic=monotonic,
        )
        return builder

    return decorator


def _meta_shape(name: str, builder: Callable, declared: Optional[Callable]) -> Callable:
    """A user op's output shape, found by running its module on the meta device (no memory,
    no arithmetic); a ``shape=`` it declares is checked against it. Without this an op that
    halves its input was taken to keep the shape: wrong parameter counts, then a torch error."""

    def shape(in_shapes, **params):
        given = None if declared is None else tuple(declared(in_shapes, **params))
        try:
            with torch.device("meta"):
                module = builder(in_shapes, **params)
                out = module(*[torch.empty((1,) + tuple(s)) for s in in_shapes])
        except RecipeError:
            raise
        except Exception as e:  # the op's own code: any error is its module's
            if given is not None:
                return given  # not runnable on the meta device (it reads values, say)
            first = (str(e).splitlines() or [""])[0]
            raise RecipeError(
                f"op '{name}' fails on inputs of shape {list(map(tuple, in_shapes))} "
                f"on the meta device ({type(e).__name__}: {first})",
                hint="fix the op, or declare its output with register_op(..., shape=...)",
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != 1:
            raise RecipeError(
                f"op '{name}' returns {type(out).__name__} "
                f"{tuple(getattr(out, 'shape', ()))} for a batch of 1, not one "
                f"tensor of a batch of 1",
                hint="its forward must return one tensor",
            )
        inferred = tuple(out.shape[1:])
        if given is not None and given != inferred:
            raise RecipeError(
                f"op '{name}' declares the output shape {given}, but its module "
                f"gives {inferred} for inputs {list(map(tuple, in_shapes))}",
                hint="fix shape= in register_op, or leave it out to use the module's",
            )
        return inferred

    return shape


def _builtin(
    name: str, *, module: Optional[Callable] = None, shape: Optional[Callable] = None, **own
) -> None:
    """A built-in op: ``module`` builds it (None: ``emit`` writes it as a plain call); ``own``
    are the rest of OpSpec's fields and ``params``/``doc``, as for ``register_op``."""
    OPS.register(name, module, shape=shape or _same_shape, builtin=True, **own)


# --- shape helpers -----------------------------------------------------------


def _need_map(shape, op) -> Tuple[int, int, int]:
    if len(shape) != 3:
        raise RecipeError(f"op '{op}' needs a (channels, height, width) input, got shape {tuple(shape)}")
    return shape


def _spatial(h, k, s, p, op):
    out = (h + 2 * p - k) // s + 1
    if out < 1:
        raise RecipeError(
            f"op '{op}' with kernel {k}, stride {s}, padding {p} does not fit a {h}-pixel input",
            hint="use a smaller kernel or remove a pool before it",
        )
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# --- built-in ops ------------------------------------------------------------

_builtin(
    "input",
    params={"shape": Param(list, positive=True)},
    inputs=0,
    shape=lambda in_shapes, shape: tuple(shape),
    doc="The graph input (one image).",
)


def _conv_padding(kernel, padding):
    return kernel // 2 if padding is None else padding


def _conv_shape(in_shapes, out, kernel, stride, padding, bias, groups, trainable, bias_trainable, init):
    c, h, w = _need_map(in_shapes[0], "conv2d")
    if c % groups or out % groups:
        raise RecipeError(
            f"conv2d groups={groups} must divide both input channels ({c}) and output channels ({out})"
        )
    if init == "dirac" and groups != 1:
        raise RecipeError(
            f"conv2d init 'dirac' needs groups 1, got groups={groups}",
            hint="use init: default for a grouped conv",
        )
    p = _conv_padding(kernel, padding)
    return (out, _spatial(h, kernel, stride, p, "conv2d"), _spatial(w, kernel, stride, p, "conv2d"))


def _conv_module(in_shapes, out, kernel, stride, padding, bias, groups, trainable, bias_trainable, init):
    m = nn.Conv2d(
        in_shapes[0][0],
        out,
        kernel,
        stride=stride,
        padding=_conv_padding(kernel, padding),
        bias=bias,
        groups=groups,
    )
    if init == "dirac" and m.weight.device.type != "meta":
        # airbench's Conv.reset_parameters: PyTorch's default init, then filter i of the
        # first in_channels is the identity on input channel i (a 1 at the kernel's centre)
        with torch.no_grad():
            nn.init.dirac_(m.weight[: m.weight.shape[1]])
    m.requires_grad_(trainable)
    if bias:
        m.bias.requires_grad_(trainable if bias_trainable is None else bias_trainable)
    return m


_builtin(
    "conv2d",
    params={
        "out": Param(int, positive=True),
        "kernel": Param(int, 3, positive=True),
        "stride": Param(int, 1, positive=True),
        "padding": Param(int, None, nonnegative=True, optional=True),
        "bias": True,
        "groups": Param(int, 1, positive=True),
        "trainable": True,
        # the bias's own switch (a fixed whitening conv with a learnt bias); None: as trainable
        "bias_trainable": Param(bool, None, optional=True),
        "init": Param(str, "default", choices=("default", "dirac")),
    },
    shape=_conv_shape,
    module=_conv_module,
    kind="conv",
    macs=lambda s, o, kernel, groups, **_: _numel(o) * (s[0][0] // groups) * kernel * kernel,
    doc="2-d convolution; padding defaults to kernel // 2 ('same' for odd kernels); "
    "init: dirac starts the first in_channels filters as the identity.",
)


def _init_bn(m, weight_init, bias_init, weight_trainable, bias_trainable):
    if m.weight.device.type != "meta":
        with torch.no_grad():
            m.weight.fill_(weight_init)
            m.bias.fill_(bias_init)
    m.weight.requires_grad_(weight_trainable)
    m.bias.requires_grad_(bias_trainable)
    return m


def _bn_module(in_shapes, eps, momentum, **init):
    n = in_shapes[0][0]
    m = (
        nn.BatchNorm2d(n, eps=eps, momentum=momentum)
        if len(in_shapes[0]) == 3
        else nn.BatchNorm1d(n, eps=eps, momentum=momentum)
    )
    return _init_bn(m, **init)


def _bn_shape(in_shapes, **_):
    if len(in_shapes[0]) not in (1, 3):
        raise RecipeError(
            f"batch_norm needs a (channels, height, width) or (features,) input, got {tuple(in_shapes[0])}"
        )
    return tuple(in_shapes[0])


_BN_PARAMS = {
    "eps": Param(float, 1e-5, positive=True),
    "momentum": Param(float, 0.1, nonnegative=True),
    "weight_init": 1.0,
    "bias_init": 0.0,
    "weight_trainable": True,
    "bias_trainable": True,
}

_builtin(
    "batch_norm",
    params=_BN_PARAMS,
    shape=_bn_shape,
    module=_bn_module,
    kind="norm",
    # One multiply-add per element once the statistics are folded in.
    macs=lambda s, o, **_: _numel(o),
    doc="Batch norm over channels; set weight_trainable: false to freeze the scale.",
)


class GhostBatchNorm(nn.BatchNorm2d):
    """Batch norm computed separately on ``splits`` sub-batches in training.

    Running statistics are kept per split (``splits x channels``) and averaged
    over the splits for evaluation. With ``splits=1`` this is plain batch norm.
    """

    def __init__(self, num_features: int, splits: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.splits = splits
        self.register_buffer("running_mean", torch.zeros(num_features * splits))
        self.register_buffer("running_var", torch.ones(num_features * splits))

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.splits
        if self.training:
            if n % s:
                raise ValueError(
                    f"ghost batch norm with {s} splits got a batch of {n} images, "
                    f"which {s} does not divide; use a batch size divisible by {s}"
                )
            # Row r of the view holds images r*s .. r*s+s-1 side by side, so channel j*c + k is
            # channel k of split j: one batch-norm call normalises every split on its own.
            y = F.batch_norm(
                x.reshape(n // s, c * s, h, w),
                self.running_mean,
                self.running_var,
                self.weight.repeat(s),
                self.bias.repeat(s),
                True,
                self.momentum,
                self.eps,
            )
            return y.reshape(n, c, h, w)
        return F.batch_norm(
            x,
            self.running_mean.view(s, c).mean(0),
            self.running_var.view(s, c).mean(0),
            self.weight,
            self.bias,
            False,
            0.0,
            self.eps,
        )

    def extra_repr(self):
        return super().extra_repr() + f", splits={self.splits}"


def _ghost_bn_shape(in_shapes, **_):
    if len(in_shapes[0]) != 3:
        raise RecipeError(
            f"ghost_batch_norm needs a (channels, height, width) input, got {tuple(in_shapes[0])}"
        )
    return tuple(in_shapes[0])


_builtin(
    "ghost_batch_norm",
    params={**_BN_PARAMS, "splits": Param(int, positive=True)},
    shape=_ghost_bn_shape,
    kind="norm",
    module=lambda s, splits, eps, momentum, **init: _init_bn(
        GhostBatchNorm(s[0][0], splits, eps=eps, momentum=momentum), **init
    ),
    macs=lambda s, o, **_: _numel(o),
    doc="Batch norm over `splits` sub-batches in training; running statistics averaged "
    "over the splits for evaluation.",
)

_builtin("relu", module=lambda s: nn.ReLU(inplace=False), kind="activation", monotonic=True, doc="max(x, 0).")
_builtin(
    "celu",
    params={"alpha": Param(float, 1.0, positive=True)},
    kind="activation",
    monotonic=True,
    module=lambda s, alpha: nn.CELU(alpha),
    doc="Continuously differentiable ELU.",
)
# GELU dips below zero for negative inputs (minimum -0.17 near x = -0.75): not monotonic.
_builtin(
    "gelu",
    params={"approximate": Param(str, "none", choices=("none", "tanh"))},
    kind="activation",
    module=lambda s, approximate: nn.GELU(approximate=approximate),
    doc="Gaussian error linear unit.",
)


def _pool(kind):
    def shape(in_shapes, size, stride, padding):
        c, h, w = _need_map(in_shapes[0], f"{kind}_pool")
        if padding > size // 2:
            # torch refuses it: a window could then lie wholly in the padding.
            raise RecipeError(
                f"{kind}_pool padding {padding} is more than half its size {size}",
                hint=f"use padding {size // 2} or less",
            )
        s = size if stride is None else stride
        return (
            c,
            _spatial(h, size, s, padding, f"{kind}_pool"),
            _spatial(w, size, s, padding, f"{kind}_pool"),
        )

    def module(in_shapes, size, stride, padding):
        cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        return cls(size, stride=stride, padding=padding)

    _builtin(
        f"{kind}_pool",
        params={
            "size": Param(int, positive=True),
            "stride": Param(int, None, positive=True, optional=True),
            "padding": Param(int, 0, nonnegative=True),
        },
        shape=shape,
        module=module,
        kind="pool",
        doc=f"{kind.capitalize()} pooling over size x size windows; stride defaults to size.",
    )

    def global_shape(in_shapes):
        c, _, _ = _need_map(in_shapes[0], f"global_{kind}_pool")
        return (c, 1, 1)

    _builtin(
        f"global_{kind}_pool",
        shape=global_shape,
        kind="pool",
        module=lambda s: (nn.AdaptiveMaxPool2d if kind == "max" else nn.AdaptiveAvgPool2d)(1),
        doc=f"{kind.capitalize()} over the whole map: (C, H, W) -> (C, 1, 1).",
    )


_pool("max")
_pool("avg")


def _add_shape(in_shapes):
    first = tuple(in_shapes[0])
    for s in in_shapes[1:]:
        if tuple(s) != first:
            raise RecipeError(
                "op 'add' needs inputs of one shape, got " + " and ".join(str(tuple(x)) for x in in_shapes)
            )
    return first


def _call(graph, name, function, args, kwargs=None):
    """One call in the generated forward, its value named after the node path."""
    return graph.create_node("call_function", function, tuple(args), kwargs or {}, name=name)


def _emit_add(graph, inputs, name):
    out = inputs[0]
    for i, x in enumerate(inputs[1:], start=2):
        out = _call(graph, name if i == len(inputs) else f"{name}_{i}", operator.add, (out, x))
    return out


_builtin("add", inputs="many", shape=_add_shape, emit=_emit_add, doc="Element-wise sum of the inputs.")


def _concat_shape(in_shapes, dim):
    first = list(in_shapes[0])
    if not -len(first) <= dim < len(first):
        raise RecipeError(f"concat dim {dim} is out of range for inputs of shape {tuple(first)}")
    d = dim % len(first)
    for s in in_shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != d):
            raise RecipeError(
                "op 'concat' needs inputs that agree except along dim "
                f"{dim}, got " + " and ".join(str(tuple(x)) for x in in_shapes)
            )
    first[d] = sum(s[d] for s in in_shapes)
    return tuple(first)


def _emit_concat(graph, inputs, name, dim):
    # dim counts per-image dimensions (0 = channels); torch's tensors carry the batch first.
    return _call(graph, name, torch.cat, (list(inputs),), {"dim": dim + 1 if dim >= 0 else dim})


_builtin(
    "concat",
    inputs="many",
    params={"dim": 0},
    shape=_concat_shape,
    emit=_emit_concat,
    doc="Concatenation; dim 0 is the channel dimension of each image.",
)
_builtin(
    "mul",
    params={"by": float},
    emit=lambda g, inputs, name, by: _call(g, name, operator.mul, (inputs[0], by)),
    macs=lambda s, o, **_: _numel(o),
    doc="Multiply by a constant.",
)
_builtin(
    "flatten",
    shape=lambda in_shapes: (_numel(in_shapes[0]),),
    emit=lambda g, inputs, name: _call(g, name, torch.flatten, (inputs[0], 1)),
    doc="(C, H, W) -> (C*H*W,).",
)


def _linear_shape(in_shapes, out, bias, trainable, init):
    if len(in_shapes[0]) != 1:
        raise RecipeError(
            f"op 'linear' needs a flat (features,) input, got shape {tuple(in_shapes[0])}",
            hint="put a flatten node before it",
        )
    return (out,)


def _linear_module(in_shapes, out, bias, trainable, init):
    m = nn.Linear(in_shapes[0][0], out, bias=bias)
    if init == "unit_std" and m.weight.device.type != "meta":
        # airbench94_muon.py CifarNet.reset: w *= 1 / w.std(), the std of the whole matrix
        with torch.no_grad():
            m.weight.mul_(1 / m.weight.std())
    m.requires_grad_(trainable)
    return m


_builtin(
    "linear",
    params={
        "out": Param(int, positive=True),
        "bias": True,
        "trainable": True,
        "init": Param(str, "default", choices=("default", "unit_std")),
    },
    shape=_linear_shape,
    module=_linear_module,
    macs=lambda s, o, out, **_: s[0][0] * out,
    doc="Fully connected layer; init: unit_std rescales PyTorch's default weight to std 1.",
)
_builtin("identity", emit=lambda g, inputs, name: inputs[0], monotonic=True, doc="Passes its input through.")
