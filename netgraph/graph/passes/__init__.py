"""Graph rewrite passes: the original code's network changes as transforms on the graph.

A pass is a named function ``fn(g, context, **params) -> matches`` that edits
``g``, its own copy of the graph, and returns how many places it changed. The
machinery around it keeps passes pure (copy in, new graph out), checks the
parameters, re-infers shapes, works out what changed (nodes added, removed,
changed, rewired) and warns, or with ``strict: true`` fails, when a pass
finds nothing to change. Each pass declares whether it keeps the network's
function exactly (``exact=True``) or changes it.

Recipes list passes under ``transforms:``, applied in order::

    transforms:
      - swap_pool_activation
      - replace_op: {from: relu, to: {op: celu, alpha: 0.075}}
      - ghost_batch_norm: {split_size: 32, strict: true}

Register your own with :func:`register_pass`; see README.md, "Passes".
"""

# The built-in passes register themselves on import.
from netgraph.graph.passes import (  # noqa: F401
    dirac_init,
    freeze_bn_scale,
    ghost_batch_norm,
    pool_before_bn,
    remove_identity,
    replace_op,
    swap_pool_activation,
    whiten_conv,
    whiten_stem,
)
from netgraph.graph.passes.base import (
    PASSES,
    PassContext,
    PassReport,
    PassSpec,
    apply_pass,
    apply_transforms,
    get_pass,
    register_pass,
)

__all__ = [
    "PASSES",
    "PassContext",
    "PassReport",
    "PassSpec",
    "apply_pass",
    "apply_transforms",
    "get_pass",
    "register_pass",
]
