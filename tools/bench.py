"""How fast a recipe trains, and what the framework costs: netgraph against hand-written PyTorch.

    python tools/bench.py recipes/bag_of_tricks.yaml --data-dir DIR --json-out bench/results/X.json
    python tools/bench.py recipes/tiny.yaml --device cpu --parts step --batch 16   # a quick look

Parts (``--parts``, default all), each timed in one process:
  step     forward+backward of the netgraph-compiled network against the same network written
           by hand (tools/reference_resnet9.py, configured from the compiled module and loaded
           with its weights, outputs checked equal first); the two alternate, ``--reps`` rounds of
           ``--steps`` steps each; the ratio netgraph / hand-written is the median of the rounds'.
  train    the whole ``train`` of the recipe, once per variant per round, variants alternating
           (``--variant NAME=KEY=VALUE,KEY=VALUE``, recipe --set overrides; ``distributed=1`` runs
           it through torch.distributed with one process): epoch time (median of epochs 2..N),
           training time, compile time, images per second, FLOP/s, peak memory, accuracy.
  augment  one epoch of the recipe's batch-group augmentation alone.
FLOP/s count 3 x 2 x MACs per image trained (forward, and backward at twice the forward), with
MACs from ``netgraph summary``; the peak they are compared with is measured here (a large
matmul in the training precision) and, for known GPUs, the datasheet's dense figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_resnet9 import ResNet9  # noqa: E402

from netgraph.core.errors import RecipeError  # noqa: E402
from netgraph.graph.build import build_graph  # noqa: E402
from netgraph.graph.executor import compile_graph  # noqa: E402
from netgraph.graph.passes import PassContext, apply_transforms  # noqa: E402
from netgraph.graph.summary import summarize  # noqa: E402
from netgraph.recipe.load import load_recipe  # noqa: E402
from netgraph.runs.plan import device_name, load_data
from netgraph.runs.run import run_recipe  # noqa: E402
from netgraph.train.config import data_config, train_config  # noqa: E402
from netgraph.train.engine import half_precision, label_smoothing_loss, synchronize  # noqa: E402


def flop_rate(flops_per_s: float) -> str:
    """FLOP/s in the unit that shows the digits: 157.3 TFLOP/s on a GPU, 21.4 GFLOP/s on a CPU
    (where '0.0 TFLOP/s' said nothing)."""
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if flops_per_s >= scale or unit == "MFLOP/s":
            return f"{flops_per_s / scale:.1f} {unit}"


# Dense tensor-core peaks from the vendors' datasheets, TFLOP/s (SXM parts; float16 = bfloat16).
DATASHEET_TFLOPS = {
    "H100": {"float16": 989.4, "float32": 66.9},
    "H200": {"float16": 989.4, "float32": 66.9},
    "A100": {"float16": 312.0, "float32": 19.5},
    "V100": {"float16": 125.0, "float32": 15.7},
}

DEFAULT_VARIANTS = [
    "float32=train.precision=float32,train.foreach=false",
    "seed=train.precision=float16",
    "foreach_off=train.precision=float16,train.foreach=false",
    "bfloat16=train.precision=bfloat16",
    "channels_last=train.precision=float16,train.channels_last=true",
    "compile=train.precision=float16,train.compile=default",
    "all_on=train.precision=float16,train.channels_last=true,train.compile=default",
    "keep_uint8=train.precision=float16,data.keep_uint8=true",
    "distributed_1=train.precision=float16,distributed=1",
]


# --- the hand-written twin ----------------------------------------------------------------


def reference_for(module: nn.Module) -> nn.Module:
    """The hand-written twin with the compiled module's structure and weights: the airbench
    network (tools/reference_airbench.py) for the records' recipes, else the ResNet-9. Raises if
    the recipe is neither a ResNet-9 variant nor an airbench network the references express."""
    if hasattr(module, "whiten") and hasattr(module, "group1"):  # recipes/airbench/*.yaml
        from reference_airbench import AirbenchNet

        widths = tuple(getattr(module, f"group{i}").conv1.out_channels for i in (1, 2, 3))
        scale = float(module.code.split("head_fc * ")[1].split(";")[0])
        reference = AirbenchNet(scale=scale, zero_whiten_bias=True, unit_std_head=False, widths=widths)
        reference.load_state_dict(module.state_dict())  # the init flags above are overwritten here
        return reference.to(next(module.parameters()).device)
    bn = module.layer1.conv_bn.bn
    act = module.layer1.conv_bn.act
    activation = (lambda: nn.CELU(act.alpha)) if isinstance(act, nn.CELU) else nn.ReLU
    widths = (
        module.prep.bn.num_features,
        module.layer1.conv_bn.bn.num_features,
        module.layer2.conv_bn.bn.num_features,
        module.layer3.conv_bn.bn.num_features,
    )
    code = module.code
    scale = float(code.split("head_fc * ")[1].split(";")[0])
    reference = ResNet9(
        num_classes=module.head.fc.out_features,
        scale=scale,
        widths=widths,
        activation=activation,
        ghost_splits=getattr(bn, "splits", 0),
        pool_before_bn="self.layer1.pool(layer1_conv_bn_conv)" in code,
        whiten=hasattr(module.prep, "whiten"),
        frozen_bn_scale=not bn.weight.requires_grad,
    )
    reference.load_state_dict(module.state_dict())
    return reference.to(next(module.parameters()).device)


def check_same_function(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest difference of the two models' training-mode outputs on x (state restored)."""
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    with torch.no_grad():
        difference = (a(x).float() - b(x).float()).abs().max().item()
    for m, s in zip((a, b), saved):
        m.load_state_dict(s)
    return difference


# --- timing -------------------------------------------------------------------------------


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, autocast) -> float:
    """Seconds per forward+backward step, averaged over ``steps`` (device synchronised)."""
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        with autocast():
            out = model(x)
        label_smoothing_loss(out, y, 0.0).backward()
    synchronize(x.device)
    return (time.perf_counter() - start) / steps


def bench_step(recipe, device: torch.device, batch: int, steps: int, reps: int, overrides) -> Dict:
    config = train_config(recipe, device.type)
    graph = build_graph(recipe)
    shape = tuple(recipe.input_shape)
    torch.manual_seed(0)
    images = torch.randn(max(batch, 10000), *shape, device=device)
    graph, _ = apply_transforms(
        graph, recipe, PassContext(train_images=lambda n: images[:n], batch_size=batch)
    )
    module = compile_graph(graph).to(device)
    reference = reference_for(module)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, module.head.fc.out_features, (batch,), device=device)
    difference = check_same_function(module.train(), reference.train(), x)
    if difference > 1e-4:
        raise RuntimeError(f"the hand-written network differs from the compiled one by {difference}")
    if config.precision == "float16":
        half_precision(module), half_precision(reference)
        x = x.half()
    if config.channels_last:
        module.to(memory_format=torch.channels_last), reference.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16")

    for model in (module, reference):  # warm up: cuDNN picks its algorithms, allocator settles
        time_steps(model, x, y, 3, autocast)
    rounds = []
    for r in range(reps):
        order = [("netgraph", module), ("hand_written", reference)]
        if r % 2:
            order.reverse()  # neither always runs first
        times = {name: time_steps(model, x, y, steps, autocast) for name, model in order}
        rounds.append(times)
    ratios = [t["netgraph"] / t["hand_written"] for t in rounds]
    netgraph_s = statistics.median(t["netgraph"] for t in rounds)
    macs = summarize(graph)["macs"]
    return {
        "batch": batch,
        "steps_per_round": steps,
        "rounds": rounds,
        "precision": config.precision,
        "channels_last": config.channels_last,
        "overrides": list(overrides),
        "output_difference_float32": difference,
        "netgraph_step_s": netgraph_s,
        "hand_written_step_s": statistics.median(t["hand_written"] for t in rounds),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "images_per_s": batch / netgraph_s,
        "flops_per_s": 6 * macs * batch / netgraph_s,
    }


def measured_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul: what the device reaches at best in this dtype."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def datasheet_flops(device: torch.device, precision: str) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in DATASHEET_TFLOPS.items():
        if key in name:
            return 1e12 * peaks["float32" if precision == "float32" else "float16"]
    return None


def parse_variant(text: str):
    name, _, sets = text.partition("=")
    overrides = [s for s in sets.split(",") if s]
    distributed = any(o == "distributed=1" for o in overrides)
    return name, [o for o in overrides if o != "distributed=1"], distributed


def one_process_group(device: torch.device):
    """torch.distributed with world size 1 in this process: the distributed code path alone."""
    import torch.distributed as dist

    from netgraph.train.distributed import Ranks

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    return Ranks(0, 1)


def bench_train(
    recipe_path: str,
    base_overrides: Sequence[str],
    variants: Sequence[str],
    device: torch.device,
    data_dir: Optional[str],
    reps: int,
    seed: int,
) -> Dict:
    """Whole training runs, variants alternating within each round."""
    parsed = [parse_variant(v) for v in variants]
    recipes = {
        name: load_recipe(recipe_path, list(base_overrides) + overrides) for name, overrides, _ in parsed
    }
    first = recipes[parsed[0][0]]
    dataset = load_data(data_config(first), data_dir)
    macs = summarize(build_graph(first))["macs"]
    runs: Dict[str, List[Dict]] = {name: [] for name, _, _ in parsed}
    failed: Dict[str, str] = {}
    for r in range(reps):
        for name, _overrides, distributed in parsed:
            if name in failed:
                continue
            ranks = one_process_group(device) if distributed else None
            try:
                result, _, _ = run_recipe(
                    recipes[name],
                    seed=seed + r,
                    device=device,
                    dataset=dataset,
                    eval_every_epoch=False,
                    ranks=ranks,
                )
            except Exception as e:  # one variant failing (say, a compiler error) ends only its row
                failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                print(f"  round {r + 1} {name}: failed: {failed[name]}", file=sys.stderr, flush=True)
                continue
            epochs = [e["epoch_time"] for e in result.log]
            images = result.train_images - result.train_images % train_config(recipes[name]).batch_size
            run = {
                "seed": seed + r,
                "test_acc": result.test_acc,
                "train_time_s": result.train_time_s,
                "setup_time_s": result.setup_time_s,
                "compile_time_s": result.compile_time_s,
                "epoch_time_s": statistics.median(epochs[1:] or epochs),
                "epoch_times_s": epochs,
                "peak_memory_gib": result.peak_memory_gib,
                "epochs": result.epochs,
            }
            run["images_per_s"] = images / run["epoch_time_s"]
            run["flops_per_s"] = 6 * macs * run["images_per_s"]
            runs[name].append(run)
            print(
                f"  round {r + 1} {name}: {run['train_time_s']:.2f} s, epoch {run['epoch_time_s']:.3f} s, "
                f"acc {run['test_acc']:.2%}"
                + (f", compile {run['compile_time_s']:.1f} s" if run["compile_time_s"] else ""),
                file=sys.stderr,
                flush=True,
            )
    summary = {}
    parsed = [v for v in parsed if v[0] not in failed]
    for name, overrides, distributed in parsed:
        rs = runs[name]
        med = lambda key, rs=rs: statistics.median(r[key] for r in rs)
        summary[name] = {
            "overrides": overrides + (["distributed=1"] if distributed else []),
            "train_time_s": med("train_time_s"),
            "epoch_time_s": med("epoch_time_s"),
            "compile_time_s": med("compile_time_s"),
            "images_per_s": med("images_per_s"),
            "flops_per_s": med("flops_per_s"),
            "peak_memory_gib": max((r["peak_memory_gib"] or 0) for r in rs) or None,
            "test_acc_mean": statistics.mean(r["test_acc"] for r in rs),
            "runs": rs,
        }
    baseline = parsed[0][0]
    for name in summary:  # per-round ratios against the first variant, then their median
        summary[name]["train_time_ratio_to_" + baseline] = statistics.median(
            a["train_time_s"] / b["train_time_s"] for a, b in zip(runs[name], runs[baseline])
        )
    return {
        "dataset": dataset.name,
        "train_images": len(dataset.train_labels),
        "macs_per_image": macs,
        "variants": summary,
        "failed": failed,
    }


def bench_augment(recipe, device: torch.device, data_dir: Optional[str], reps: int) -> Dict:
    from netgraph.runs.plan import normalisation
    from netgraph.train.augment import BatchGroupLoader
    from netgraph.train.engine import input_dtype, to_device

    config, dconfig = train_config(recipe, device.type), data_config(recipe)
    dataset = load_data(dconfig, data_dir)
    mean, std = normalisation(dataset)
    data = to_device(
        dataset, device, mean, std, dconfig.pad, input_dtype(config.precision), dconfig.keep_uint8
    )
    loader = BatchGroupLoader(
        data.train_padded,
        data.train_labels,
        config.batch_size,
        dconfig.augmentations,
        max_groups=dconfig.max_groups,
        normalize=data.normalize,
    )
    times = []
    for _r in range(reps + 1):
        synchronize(device)
        start = time.perf_counter()
        for _ in loader:
            pass
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"epoch_s": statistics.median(times[1:]), "rounds_s": times[1:], "batches": len(loader)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the recipe (every part, every variant)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", help="data set folder (default: the recipe's data section)")
    parser.add_argument("--parts", default="step,train,augment")
    parser.add_argument("--batch", type=int, help="batch of the step part (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=20, help="steps per round of the step part")
    parser.add_argument("--reps", type=int, default=5, help="rounds of the step and augment parts")
    parser.add_argument("--train-reps", type=int, default=3, help="rounds of the train part")
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME=KEY=VALUE,...",
        help="a train-part variant (repeatable; default: each speed-up on and off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    recipe = load_recipe(args.recipe, args.set)
    config = train_config(recipe, device.type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as netgraph train sets it
    record = {
        "command": shlex.join(["python", "tools/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "recipe": args.recipe,
        "device": device_name(device),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(config.precision, torch.float32)
    record["peak_flops_measured"] = measured_peak_flops(device, dtype)
    record["peak_flops_datasheet"] = datasheet_flops(device, config.precision)
    print(
        f"{record['device']}, torch {torch.__version__}: matmul peak "
        f"{flop_rate(record['peak_flops_measured'])} in {config.precision}"
    )
    if "step" in parts:
        s = bench_step(recipe, device, args.batch or config.batch_size, args.steps, args.reps, args.set)
        record["step"] = s
        print(
            f"forward+backward, batch {s['batch']}: netgraph {1000 * s['netgraph_step_s']:.2f} ms, "
            f"hand-written {1000 * s['hand_written_step_s']:.2f} ms, ratio {s['ratio_median']:.3f} "
            f"(rounds {s['ratio_min']:.3f}..{s['ratio_max']:.3f}); {s['images_per_s']:,.0f} images/s, "
            f"{flop_rate(s['flops_per_s'])}"
        )
    if "augment" in parts:
        a = bench_augment(recipe, device, args.data_dir, args.reps)
        record["augment"] = a
        print(f"augmentation alone: {a['epoch_s'] * 1000:.1f} ms per epoch of {a['batches']} batches")
    if "train" in parts:
        t = bench_train(
            args.recipe,
            args.set,
            args.variant or DEFAULT_VARIANTS,
            device,
            args.data_dir,
            args.train_reps,
            args.seed,
        )
        record["train"] = t
        print(
            f"{'variant':>14} {'train s':>8} {'epoch s':>8} {'ratio':>6} {'compile s':>9} "
            f"{'images/s':>9} {'TFLOP/s':>8} {'peak GiB':>8} {'acc %':>6}"
        )
        for name, v in t["variants"].items():
            ratio = next(value for key, value in v.items() if key.startswith("train_time_ratio_to_"))
            peak = f"{v['peak_memory_gib']:.2f}" if v["peak_memory_gib"] else "-"
            print(
                f"{name:>14} {v['train_time_s']:8.2f} {v['epoch_time_s']:8.3f} {ratio:6.3f} "
                f"{v['compile_time_s']:9.1f} {v['images_per_s']:9,.0f} {v['flops_per_s'] / 1e12:8.3g} "
                f"{peak:>8} {100 * v['test_acc_mean']:6.2f}"
            )
        for name, error in t["failed"].items():
            print(f"{name:>14} failed: {error}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RecipeError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        sys.exit(2)
