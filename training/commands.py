"""Typer commands for training, evaluation and export; TensorFlow is imported inside them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer

from app.imaging.preprocess import InputSpec
from app.logging_setup import configure_logging

WidthOption = Annotated[
    float,
    typer.Option(
        help="Channel multiplier of the compact CNN (1.0: 24, 32, 64, 128, 192)", min=0.25, max=4.0
    ),
]

TRAIN_EXTRA = "pip install 'ctscan[train,cpu]'  (or: pip install -e '.[train,cpu]')"


def require_training_extra() -> None:
    """Exit with an install hint when TensorFlow / Keras / tf2onnx are missing."""
    missing = [
        m
        for m in ("tensorflow", "keras", "tf2onnx", "sklearn", "matplotlib")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        typer.echo(
            f"error: training needs {', '.join(missing)}; install with {TRAIN_EXTRA}", err=True
        )
        raise typer.Exit(2)


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """'1=hemorrhage,0=normal' → {'1': 'hemorrhage', '0': 'normal'}."""
    if not text:
        return None
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    return {key.strip(): value.strip() for key, value in pairs}


def parse_augment(text: str | None) -> dict[str, float]:
    """'zoom=0.3,gamma=0.3' → {'zoom': 0.3, 'gamma': 0.3}; unknown keys are refused."""
    from training.train import TrainConfig

    known = TrainConfig().augment
    if not text:
        return known
    changes = {k.strip(): float(v) for k, v in (item.split("=", 1) for item in text.split(","))}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise typer.BadParameter(f"unknown augmentation {unknown}; known: {sorted(known)}")
    return {**known, **changes}


def train(
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Dataset folder")],
    name: Annotated[str, typer.Option(help="Model name, e.g. chest-ct-cancer")],
    arch: Annotated[
        str, typer.Option(help="compact | vgg19 | resnet50 | efficientnet-lite0")
    ] = "compact",
    weights: Annotated[str, typer.Option(help="imagenet | none | PATH to weights")] = "none",
    head: Annotated[str, typer.Option(help="gap (default) | vgg (Flatten + 2x4096)")] = "gap",
    width: WidthOption = 1.0,
    image_size: Annotated[int, typer.Option(help="Square input side in pixels")] = 128,
    epochs: Annotated[int, typer.Option(help="Maximum epochs per fit")] = 40,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 2e-3,
    folds: Annotated[int, typer.Option(help="Cross-validation folds (0: none)")] = 5,
    max_folds: Annotated[int | None, typer.Option(help="Run only the first N folds")] = None,
    fine_tune_layers: Annotated[int, typer.Option(help="Backbone layers to fine-tune")] = 20,
    fine_tune_epochs: Annotated[int, typer.Option()] = 10,
    fine_tune_learning_rate: Annotated[
        float, typer.Option(help="Learning rate of the fine-tuning stage (pretrained backbones)")
    ] = 1e-5,
    patience: Annotated[int, typer.Option(help="Early-stopping patience")] = 10,
    crop_foreground: Annotated[
        bool, typer.Option(help="Crop each image to its body before resizing (zoom-invariant)")
    ] = False,
    keep_aspect: Annotated[bool, typer.Option(help="Pad to square before resizing")] = False,
    intensity: Annotated[str, typer.Option(help="percentile | minmax | none")] = "percentile",
    label_map: Annotated[str | None, typer.Option(help="e.g. '1=hemorrhage,0=normal'")] = None,
    seed: Annotated[int, typer.Option()] = 42,
    ship: Annotated[
        str, typer.Option(help="final: refit on all data | ensemble: average the fold models")
    ] = "final",
    members_per_fold: Annotated[
        int,
        typer.Option(
            help="Models per fold, each from its own seed (with --ship ensemble: the shipped "
            "ensemble holds folds x members)"
        ),
    ] = 1,
    tta_flip: Annotated[bool, typer.Option(help="Average with the mirrored image")] = True,
    inner_validation: Annotated[
        float,
        typer.Option(
            help="Fraction of each fold's training images set aside to stop on (early "
            "stopping, learning-rate schedule, kept epoch), so the scored fold decides "
            "nothing; 0: stop on the scored fold (optimistic scores)"
        ),
    ] = 0.0,
    ema: Annotated[
        float,
        typer.Option(
            help="Validate and ship an exponential moving average of the weights with this "
            "momentum per step, e.g. 0.99 (0: off)",
            min=0.0,
            max=0.9999,
        ),
    ] = 0.0,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Augmentation overrides, e.g. 'zoom=0.3,gamma=0.3,resolution=0.5' (keys: "
            "rotation, zoom, translation, contrast, brightness, gamma, resolution)"
        ),
    ] = None,
    max_samples: Annotated[int | None, typer.Option(help="Subsample for a quick run")] = None,
    output: Annotated[Path, typer.Option(help="Model store to write into")] = Path("models"),
    cache_dir: Annotated[Path, typer.Option(help="Preprocessed-array cache")] = Path("cache"),
    runs_dir: Annotated[Path, typer.Option(help="Where the Keras models are kept")] = Path("runs"),
) -> None:
    """Cross-validate, calibrate, train on all data and export a new model version."""
    require_training_extra()
    configure_logging()
    from training.architectures import ARCHITECTURES, HEADS, WeightsUnavailable, build
    from training.pipeline import TrainRequest, run
    from training.train import TrainConfig

    if arch not in ARCHITECTURES or head not in HEADS or ship not in ("final", "ensemble"):
        typer.echo(
            f"error: --arch must be one of {ARCHITECTURES}, --head one of {HEADS}, "
            "--ship final or ensemble",
            err=True,
        )
        raise typer.Exit(2)
    if width != 1.0 and arch != "compact":
        typer.echo("error: --width applies to --arch compact only", err=True)
        raise typer.Exit(2)
    config = TrainConfig(
        arch=arch,
        weights=weights,
        head=head,
        width=width,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        fine_tune_layers=fine_tune_layers,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_learning_rate=fine_tune_learning_rate,
        patience=patience,
        seed=seed,
        tta_flip=tta_flip,
        inner_validation=inner_validation,
        ema=ema,
        augment=parse_augment(augment),
    )
    try:
        # fail fast, before anything is written
        build(arch, image_size, 2, weights, head, width=width)
    except WeightsUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    spec = InputSpec(
        height=image_size,
        width=image_size,
        crop_foreground=crop_foreground,
        keep_aspect=keep_aspect,
        intensity=intensity,
        in_graph=_in_graph(arch),
    )
    try:
        request = TrainRequest(
            data=data,
            name=name,
            output=output,
            config=config,
            spec=spec,
            folds=folds,
            max_folds=max_folds,
            cache_dir=cache_dir,
            label_map=parse_label_map(label_map),
            max_samples=max_samples,
            ship=ship,
            runs_dir=runs_dir,
            members_per_fold=members_per_fold,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    folder = run(request)
    typer.echo(f"wrote {folder}")


def pretrain(
    data: Annotated[
        list[Path], typer.Option(exists=True, file_okay=False, help="Source dataset (repeatable)")
    ],
    output: Annotated[Path, typer.Option(help="Backbone weights file, NAME.weights.h5")],
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Dataset whose images must not be used, e.g. the target task's (repeatable)",
        ),
    ] = None,
    arch: Annotated[
        str, typer.Option(help="compact (from random weights) | efficientnet-lite0 (from ImageNet)")
    ] = "compact",
    image_size: Annotated[int, typer.Option(help="Square input side in pixels")] = 128,
    width: WidthOption = 1.0,
    epochs: Annotated[
        int, typer.Option(help="Epochs (efficientnet-lite0: of the head on frozen features)")
    ] = 40,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 2e-3,
    fine_tune_layers: Annotated[
        int, typer.Option(help="efficientnet-lite0: backbone layers to fine-tune")
    ] = 60,
    fine_tune_epochs: Annotated[int, typer.Option(help="efficientnet-lite0")] = 15,
    fine_tune_learning_rate: Annotated[float, typer.Option(help="efficientnet-lite0")] = 1e-4,
    seed: Annotated[int, typer.Option()] = 42,
    cache_dir: Annotated[Path, typer.Option(help="Preprocessed-array cache")] = Path("cache"),
) -> None:
    """Pretrain a backbone on other datasets' images, for `ctscan train --arch ARCH --weights
    OUTPUT`: the compact CNN from random weights, or EfficientNet-Lite0 from its ImageNet
    weights (head on frozen features, then the last layers fine-tuned, BatchNorm frozen)."""
    require_training_extra()
    configure_logging()
    from training.pretrain import PRETRAINABLE, WEIGHTS_SUFFIX, PretrainRequest
    from training.pretrain import pretrain as run_pretraining
    from training.train import TrainConfig

    if not output.name.endswith(WEIGHTS_SUFFIX):
        typer.echo(f"error: --output must end with {WEIGHTS_SUFFIX}", err=True)
        raise typer.Exit(2)
    if arch not in PRETRAINABLE:
        typer.echo(f"error: --arch must be one of {', '.join(PRETRAINABLE)}", err=True)
        raise typer.Exit(2)
    config = TrainConfig(
        arch=arch,
        weights="none" if arch == "compact" else "imagenet",
        image_size=image_size,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        fine_tune_layers=fine_tune_layers,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_learning_rate=fine_tune_learning_rate,
        seed=seed,
    )
    request = PretrainRequest(
        sources=data,
        exclude=exclude or [],
        output=output,
        config=config,
        spec=InputSpec(height=image_size, width=image_size),
        cache_dir=cache_dir,
    )
    typer.echo(f"wrote {run_pretraining(request)}")


def _in_graph(arch: str) -> list[str]:
    steps = ["softmax(logits / temperature)"]
    if arch == "efficientnet-lite0":
        steps.insert(0, "grey → 3 channels, minus 0.498, over 0.502 (EfficientNet-Lite input)")
    elif arch != "compact":
        steps.insert(0, "grey → 3 channels, x255, minus ImageNet caffe means")
    return steps


def evaluate(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="models/<name>/<version>")
    ],
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Labelled images")],
    label_map: Annotated[str | None, typer.Option(help="e.g. '1=hemorrhage,0=normal'")] = None,
    output: Annotated[Path | None, typer.Option(help="Write metrics.json here")] = None,
) -> None:
    """Score an exported model on a labelled folder through the service's own predict path."""
    require_training_extra()
    configure_logging()
    from training.scoring import score_model_dir

    metrics = score_model_dir(model_dir, data, parse_label_map(label_map))
    text = json.dumps(metrics, indent=2)
    if output:
        output.write_text(text)
    typer.echo(text)


def robustness(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="models/<name>/<version>")
    ],
    data: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The dataset it was trained on")
    ],
    cache_dir: Annotated[Path, typer.Option(help="Preprocessed-array cache")] = Path("cache"),
    write: Annotated[bool, typer.Option(help="Store the table in the card and report")] = False,
) -> None:
    """Cross-validated accuracy of a shipped ensemble with its images zoomed out, zoomed in and
    on other display curves: each fold scored by its own members, as training scored it."""
    require_training_extra()
    configure_logging()
    from training.robustness import markdown, shifted_cross_validation, write_robustness

    try:
        rows = shifted_cross_validation(model_dir, data, cache_dir)
    except (ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if write:
        write_robustness(model_dir, rows)
    typer.echo(markdown(rows))


def export(
    run: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="runs/NAME/VERSION (logits-*.keras)")
    ],
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="models/NAME/VERSION to refresh")
    ],
    data: Annotated[
        Path | None, typer.Option(help="Labelled images for the parity check (default: noise)")
    ] = None,
) -> None:
    """Re-export kept Keras models into an existing model version: rebuild the served graph
    (temperature and test-time augmentation from its card), check parity, update the card."""
    require_training_extra()
    configure_logging()
    from training.reexport import reexport

    difference = reexport(run, model_dir, data)
    typer.echo(f"wrote {model_dir / 'model.onnx'} (parity max abs diff {difference:.2e})")


def quantize(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="models/<name>/<version>")
    ],
    data: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="Training images (calibration)")
    ],
    output: Annotated[Path, typer.Option(help="Store to write <name>-int8/<version> into")] = Path(
        "variants"
    ),
    calibration_images: Annotated[int, typer.Option(min=8)] = 128,
    label_map: Annotated[str | None, typer.Option(help="e.g. '1=hemorrhage,0=normal'")] = None,
) -> None:
    """Write an int8 variant (static quantisation calibrated on training images) and report its
    accuracy change and speed-up against the float model, on images not used to calibrate."""
    configure_logging()
    if importlib.util.find_spec("onnx") is None:
        typer.echo(f"error: quantisation needs onnx; install with {TRAIN_EXTRA}", err=True)
        raise typer.Exit(2)
    from training.quantize import quantize_model_dir

    folder = quantize_model_dir(
        model_dir, data, output, parse_label_map(label_map), calibration_images
    )
    report = json.loads((folder / "metadata.json").read_text())["quantization"]
    typer.echo(json.dumps({"wrote": str(folder), **report}, indent=2))


def compare(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The shipped models/<name>/<version>")
    ],
    candidates: Annotated[
        list[Path], typer.Argument(exists=True, file_okay=False, help="Other exported versions")
    ],
    runs: Annotated[int, typer.Option(min=3, help="session.run calls per latency median")] = 30,
    note: Annotated[
        list[str] | None, typer.Option(help="A line under the table (repeatable)")
    ] = None,
    carry_from: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="An earlier version whose table's other rows are carried over (marked †)",
        ),
    ] = None,
) -> None:
    """Put an architecture comparison table (cross-validated accuracy, macro F1, recall,
    training time, size, CPU latency measured now) into the shipped model's card and report."""
    configure_logging()
    from app.errors import ModelLoadError
    from training.compare import NotComparable, compare, markdown, write_comparison

    try:
        table = compare(model_dir, candidates, runs, note, carry_from)
    except (NotComparable, ModelLoadError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    write_comparison(model_dir, table)
    typer.echo(markdown(table))


def nested(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The shipped models/<name>/<version>")
    ],
    run: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="The shipped recipe trained again with --inner-validation (exported folder)",
        ),
    ],
) -> None:
    """Write a nested cross-validation (the shipped recipe re-run with --inner-validation) into
    the shipped card as `evaluation.nested_cross_validation` and into its report: the estimate
    whose folds chose nothing on the images they were scored on."""
    configure_logging()
    from app.errors import ModelLoadError
    from training.compare import NotComparable
    from training.nested import nested_estimate, nested_markdown, write_nested

    try:
        estimate = nested_estimate(run, model_dir)
    except (NotComparable, ModelLoadError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    write_nested(model_dir, estimate)
    typer.echo(nested_markdown(estimate))


def applicability(
    model_dir: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The shipped models/<name>/<version>")
    ],
    datasets: Annotated[
        Path,
        typer.Option(
            exists=True, file_okay=False, help="Folder of the task datasets (own and others)"
        ),
    ],
    quantile: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Share of in-domain scores under the threshold")
    ] = 0.98,
    cache_dir: Annotated[Path, typer.Option(help="Preprocessed-array cache")] = Path("cache"),
) -> None:
    """Give a shipped version its applicability check: the graph's `features` output, the
    statistics fitted fold by fold, a threshold chosen on out-of-fold scores, and the evaluation
    against the other datasets, photographs, a phantom, blanks, noise, documents and wrong
    windows, written into the card and report."""
    require_training_extra()
    configure_logging()
    from training.applicability_run import run_applicability

    try:
        text = run_applicability(model_dir, datasets, quantile, cache_dir)
    except (ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(text)
