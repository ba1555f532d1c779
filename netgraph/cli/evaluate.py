"""netgraph eval: a saved model evaluated on the test set."""

from __future__ import annotations


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a model saved by train --save on the test set")
    e.add_argument("model", help="file written by netgraph train --save")
    e.add_argument("--data-dir", help="folder with the data set (as for train)")
    e.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    e.set_defaults(run=run)


def run(args) -> None:
    import dataclasses

    from netgraph.runs.checkpoints import load_model
    from netgraph.runs.plan import normalisation, prepare, resolve_device
    from netgraph.train.engine import evaluate, input_dtype, to_device

    device = resolve_device(args.device)
    recipe, graph, model, saved = load_model(args.model, device)
    plan = prepare(recipe, data_dir=args.data_dir, device=device)
    config, dataset, dconfig = plan.config, plan.dataset, plan.dconfig
    if device.type == "cpu":
        model.float()  # half-precision convolutions are slow on a CPU
        config = dataclasses.replace(config, precision="float32")
    mean, std = normalisation(dataset, dconfig)
    data = to_device(
        dataset,
        device,
        mean,
        std,
        0,
        next(model.parameters()).dtype if config.precision == "float16" else input_dtype(config.precision),
    )
    acc, loss = evaluate(model, data.test_images, data.test_labels, config)
    print(
        f"test accuracy {acc:.2%} (loss {loss:.4f}) on {len(dataset.test_labels)} {dataset.name} "
        f"test images" + (f"; at training: {saved['test_acc']:.2%}" if "test_acc" in saved else "")
    )
