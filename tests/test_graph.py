"""Graph building: blocks, wiring rules, validation messages, the round trip."""

import pytest
import yaml
from conftest import RECIPES

from netgraph import RecipeError, build_graph, load_recipe, recipe_from_dict, to_nested
from netgraph.graph.build import INPUT, inputs


def graph(text, write=None, name="r.yaml"):
    if write is not None:
        return build_graph(load_recipe(write(name, text)))
    return build_graph(recipe_from_dict(yaml.safe_load(text), file=name))


def same_graph(a, b):
    """Equal nodes (op, params, shape), equal wiring in order, equal output."""
    assert set(a) == set(b)
    for n in a:
        for key in ("op", "params", "shape"):
            assert a.nodes[n][key] == b.nodes[n][key], (n, key)
        assert inputs(a, n) == inputs(b, n), n
    assert a.graph["output"] == b.graph["output"]


def test_resnet9_graph():
    g = build_graph(load_recipe(RECIPES / "resnet9.yaml"))
    assert len(g) == 34  # input + 33 layers
    assert g.nodes["layer1/residual/res1/conv"]["params"]["out"] == 128
    assert g.nodes["layer3/residual/add"]["shape"] == (512, 4, 4)
    assert inputs(g, "layer1/residual/add") == ["layer1/pool", "layer1/residual/res2/act"]
    assert inputs(g, "prep/conv") == [INPUT]
    assert g.graph["output"] == "head/scale"
    assert g.nodes["head/scale"]["shape"] == (10,)


def test_wiring_rules():
    with pytest.warns(UserWarning, match="5 node.s. do not reach the output 'h'"):
        g = wiring_example()
    assert inputs(g, "grp/b") == ["a"]
    assert inputs(g, "grp/c") == ["a"]
    assert inputs(g, "grp/d") == ["grp/b", "a"]
    assert inputs(g, "grp/e") == ["a", "grp/d"]
    assert inputs(g, "f") == ["grp/e", "a"]
    assert inputs(g, "g") == ["a", "a"]
    assert inputs(g, "h") == ["g"]
    assert g.graph["output"] == "h"


def wiring_example():
    return graph(
        """
        network:
          a: {op: conv2d, out: 4}
          grp:
            b: {op: relu}                      # first in its dict: the dict's input (a)
            c: {op: relu, in: ../a}            # up one dict
            d: {op: add, in: [b, /a]}          # relative and absolute
            e: {op: add, in: [input, d]}       # input = this dict's input
          f: {op: add, in: [grp, /input]}      # a dict's output is its last node
          g: {op: add, in: [a, a]}             # one source twice keeps both slots
          h: {op: relu}                        # previous item
    """.replace("/input]", "a]")
    )


def test_graph_input_group_input_and_named_output():
    with pytest.warns(UserWarning, match="left out of the module: tail"):
        g = group_input_example()
    assert inputs(g, "body/x") == [INPUT, "stem"]
    assert g.graph["output"] == "body/x"


def group_input_example():
    return graph("""
        input: {shape: [3, 8, 8]}
        output: body/x
        network:
          stem: {op: conv2d, out: 3}
          body:
            in: /input                          # a dict can take its input explicitly
            x: {op: add, in: [input, /stem]}
          tail: {op: relu}
    """)


def test_blocks_parameters_defaults_interpolation_and_nesting():
    g = graph("""
        blocks:
          unit:
            $defaults: {k: 3, act: {op: relu}}
            conv: {op: conv2d, out: $c, kernel: $k}
            act: $act
          pair:
            one: {block: unit, c: $c}
            two: {block: unit, c: $c, k: 1, act: {op: celu, alpha: 0.3}}
        network:
          p: {block: pair, c: 16}
    """)
    assert g.nodes["p/one/conv"]["params"]["kernel"] == 3
    assert g.nodes["p/two/conv"]["params"]["kernel"] == 1
    assert g.nodes["p/one/act"]["op"] == "relu"
    assert g.nodes["p/two/act"]["params"]["alpha"] == 0.3
    assert inputs(g, "p/two/conv") == ["p/one/act"]
    assert g.nodes["p/two/conv"]["shape"] == (16, 32, 32)


def test_round_trip_through_the_nested_dict():
    g = build_graph(load_recipe(RECIPES / "resnet9.yaml"))
    nested = to_nested(g)
    assert "in" not in nested["network"]["prep"]["conv"]  # implicit wiring stays implicit
    assert nested["network"]["layer1"]["residual"]["add"]["in"] == ["/layer1/pool", "res2/act"]
    again = build_graph(recipe_from_dict(yaml.safe_load(yaml.safe_dump(nested, sort_keys=False))))
    same_graph(g, again)
    assert to_nested(again) == nested


def test_round_trip_keeps_explicit_wiring():
    with pytest.warns(UserWarning):
        g = graph("""
            output: /b
            network:
              a: {op: conv2d, out: 4}
              x: {op: relu}
              b: {op: add, in: [a, a]}
        """)
    with pytest.warns(UserWarning, match="do not reach the output"):
        again = build_graph(recipe_from_dict(to_nested(g)))
    same_graph(g, again)


# Every validation error names the file, the node path and what is wrong.
BAD = {
    "unknown op": (
        """
        network:
          conv: {op: conv2, out: 8}
    """,
        "r.yaml:3: node 'conv': unknown op 'conv2' (did you mean 'conv2d'?)",
    ),
    "missing parameter": (
        """
        network:
          layer:
            fc: {op: linear}
    """,
        "r.yaml:4: node 'layer/fc': op 'linear' needs parameter 'out'",
    ),
    "unknown parameter": (
        """
        network:
          conv: {op: conv2d, out: 8, kernal: 3}
    """,
        "node 'conv': unknown parameter 'kernal' for op 'conv2d'",
    ),
    "wrong type": (
        """
        network:
          conv: {op: conv2d, out: sixty-four}
    """,
        "node 'conv': parameter 'out' must be an integer, got 'sixty-four'",
    ),
    "zero size": (
        """
        network:
          conv: {op: conv2d, out: 0}
    """,
        "node 'conv': parameter 'out' must be positive, got 0",
    ),
    "unknown input path": (
        """
        network:
          a: {op: relu}
          b:
            c: {op: add, in: [../a, ../aa]}
    """,
        "r.yaml:5: node 'b/c': in: '../aa' names no node (no 'aa' in the network) (did you mean 'a'?)",
    ),
    "cycle": (
        """
        network:
          a: {op: add, in: [/input, c]}
          b: {op: relu}
          c: {op: relu}
    """,
        "node 'a': the inputs form a cycle: a -> b -> c -> a",
    ),
    "add shape mismatch": (
        """
        network:
          a: {op: conv2d, out: 128}
          b: {op: conv2d, out: 256}
          c: {op: add, in: [a, b]}
    """,
        "r.yaml:5: node 'c': op 'add' needs inputs of one shape, got (128, 32, 32) and (256, 32, 32)",
    ),
    "linear after an unflattened map": (
        """
        network:
          a: {op: conv2d, out: 16}
          fc: {op: linear, out: 10}
    """,
        "node 'fc': op 'linear' needs a flat (features,) input, got shape (16, 32, 32) "
        "(put a flatten node before it)",
    ),
    "pool too large": (
        """
        network:
          a: {op: max_pool, size: 64}
    """,
        "node 'a': op 'max_pool' with kernel 64, stride 64, padding 0 does not fit a 32-pixel input",
    ),
    "too few inputs": (
        """
        network:
          a: {op: add}
    """,
        "node 'a': op 'add' takes two or more inputs, got 1",
    ),
    "unknown block": (
        """
        blocks:
          conv_bn: {conv: {op: conv2d, out: $c}}
        network:
          a: {block: conv_bm, c: 3}
    """,
        "r.yaml:5: node 'a': unknown block 'conv_bm' (did you mean 'conv_bn'?)",
    ),
    "block parameter unset": (
        """
        blocks:
          conv_bn: {conv: {op: conv2d, out: $c}}
        network:
          a: {block: conv_bn}
    """,
        "node 'a': block 'conv_bn' needs parameter 'c' (set it where the block is used",
    ),
    "unknown block parameter": (
        """
        blocks:
          conv_bn: {conv: {op: conv2d, out: $c}}
        network:
          a: {block: conv_bn, c: 3, C: 4}
    """,
        "node 'a': block 'conv_bn' has no parameter 'C' (did you mean 'c'?)",
    ),
    "error inside a block": (
        """
        blocks:
          conv_bn:
            conv: {op: conv2d, out: $c, kernal: 3}
        network:
          first: {block: conv_bn, c: 3}
    """,
        "r.yaml:6: node 'first/conv': unknown parameter 'kernal' for op 'conv2d' (its parameters: ",
    ),
    "recursive block": (
        """
        blocks:
          loop: {inner: {block: loop}}
        network:
          a: {block: loop}
    """,
        "block 'loop' uses itself: loop -> loop",
    ),
    "reserved name": (
        """
        network:
          input: {op: relu}
    """,
        "node 'input': 'input' is reserved",
    ),
    "not a node": (
        """
        network:
          a: 3
    """,
        "node 'a': expected a node ({op: ...}), a block use ({block: ...}) or a dict of nodes, got 3",
    ),
    "empty group": (
        """
        network:
          a: {}
    """,
        "node 'a': empty dict: a group needs at least one node",
    ),
    "bad output": (
        """
        output: b
        network:
          a: {op: relu}
    """,
        "in: 'b' names no node",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_validation_errors(write, case):
    text, expected = BAD[case]
    with pytest.raises(RecipeError) as e:
        graph(text, write)
    assert expected in str(e.value)
    assert str(e.value).startswith(str(write("r.yaml", text)))  # names the recipe file


def test_error_in_block_names_the_definition_line(write):
    with pytest.raises(RecipeError, match=r"\[in block 'conv_bn', line 4\]"):
        graph(BAD["error inside a block"][0], write)
