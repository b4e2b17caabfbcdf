"""Each architecture trains a step on tiny synthetic images, exports to ONNX with parity, and
is served by the service. Needs the `train` extra; skipped without it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.imaging.preprocess import InputSpec
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import encode

pytestmark = pytest.mark.train


def blob_dataset(root: Path, per_class: int = 12, size: int = 48, seed: int = 0) -> None:
    """Two classes: a bright blob on the left or on the right of a noisy slice."""
    rng = np.random.default_rng(seed)
    for label, column in (("left", size // 4), ("right", 3 * size // 4)):
        folder = root / label
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
            pixels[size // 2 - 5 : size // 2 + 5, column - 5 : column + 5] = 250
            (folder / f"{index}.png").write_bytes(encode(Image.fromarray(pixels), "PNG"))


@contextlib.contextmanager
def deterministic_ops() -> Iterator[None]:
    """TensorFlow ops in their deterministic form while inside (the seed alone does not fix
    the result of multi-threaded CPU kernels)."""
    from tensorflow.python.framework import config  # the public API has no "disable"

    config.enable_op_determinism()
    try:
        yield
    finally:
        config.disable_op_determinism()


def tiny_request(
    tmp_path: Path, name: str, config: Any, folds: int, ship: str = "final", **extra: Any
) -> Any:
    """A training request over `tmp_path/data`, writing into `tmp_path/models` and `/runs`."""
    from training.pipeline import TrainRequest

    size = config.image_size
    return TrainRequest(
        data=tmp_path / "data",
        name=name,
        output=tmp_path / "models",
        config=config,
        spec=InputSpec(height=size, width=size),
        folds=folds,
        cache_dir=None,
        runs_dir=tmp_path / "runs",
        ship=ship,
        **extra,
    )


@pytest.mark.parametrize(("arch", "folds"), [("compact", 2), ("resnet50", 0), ("vgg19", 0)])
def test_train_export_and_serve(arch: str, folds: int, tmp_path: Path) -> None:
    from training.pipeline import run
    from training.train import TrainConfig

    blob_dataset(tmp_path / "data")
    config = TrainConfig(arch=arch, image_size=32, epochs=1, batch_size=8, patience=1)
    request = tiny_request(tmp_path, f"blob-{arch}", config, folds=folds)
    folder = run(request)
    card = json.loads((folder / "metadata.json").read_text())
    assert card["evaluation"]["parity_max_abs_diff"] <= 1e-4
    assert card["classes"] == ["left", "right"] and card["architecture"]["name"] == arch
    assert (folder / "report" / "metrics.json").is_file()
    assert (folder / "report" / "learning_curves.png").is_file()
    if folds:
        assert (folder / "report" / "confusion_matrix.png").is_file()
        assert card["evaluation"]["cross_validation"]["folds"] == folds
    assert not list((tmp_path / "models" / f"blob-{arch}").glob(".staging-*"))
    settings = Settings(models_dir=tmp_path / "models", intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        image = (tmp_path / "data" / "left" / "0.png").read_bytes()
        response = client.post(f"/v1/models/blob-{arch}/predict", files={"file": ("a.png", image)})
        assert response.status_code == 200, response.text
        assert abs(sum(response.json()["probabilities"].values()) - 1) < 1e-5


def test_imagenet_offline_fails_cleanly(tmp_path: Path) -> None:
    """No network: one clear line, non-zero exit, nothing written."""
    (tmp_path / "data" / "a").mkdir(parents=True)
    env = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from app.cli import main; main()",
            "train",
            "--data",
            str(tmp_path / "data"),
            "--name",
            "x",
            "--arch",
            "resnet50",
            "--weights",
            "imagenet",
            "--image-size",
            "32",
            "--output",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ImageNet weights" in errors[0] and "--weights" in errors[0]
    assert not (tmp_path / "models").exists()


def test_width_is_refused_for_the_imagenet_architectures(tmp_path: Path) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    command = [sys.executable, "-c", "from app.cli import main; main()", "train"]
    options = ["--data", str(tmp_path / "data"), "--name", "x", "--output", str(tmp_path / "m")]
    result = subprocess.run(
        [*command, *options, "--arch", "vgg19", "--width", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert "error: --width applies to --arch compact only" in result.stderr
    assert not (tmp_path / "m").exists()


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    import keras

    from training.architectures import WeightsUnavailable, backbone_of, build

    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(weights)
    model = build("resnet50", 32, 2, weights=str(weights))
    loaded = backbone_of(model)
    assert loaded is not None
    for mine, theirs in zip(loaded.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build("resnet50", 32, 2, weights=str(tmp_path / "missing.h5"))


def test_heatmap_peak_falls_on_the_blob(tmp_path: Path) -> None:
    """Trained where the class `blob` is a bright blob anywhere (else `clear`): the CAM of the
    predicted class must peak on the blob, through the exported ONNX graph and the API."""
    from training.pipeline import run
    from training.train import TrainConfig

    size, rng, centres = 128, np.random.default_rng(1), {}
    for label in ("blob", "clear"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(30):
            pixels = rng.integers(0, 50, (size, size)).astype(np.uint8)
            if label == "blob":
                row, column = (int(v) for v in rng.integers(16, size - 16, 2))
                pixels[row - 10 : row + 10, column - 10 : column + 10] = 255
                centres[index] = (row, column)
            path = tmp_path / "data" / label / f"{index}.png"
            path.write_bytes(encode(Image.fromarray(pixels), "PNG"))
    config = TrainConfig(image_size=size, epochs=40, batch_size=8, learning_rate=3e-3)
    request = tiny_request(tmp_path, "blob", config, folds=0)
    with deterministic_ops():  # a free-running fit localised badly in about 1 run of 6
        run(request)
    settings = Settings(models_dir=tmp_path / "models", intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        hits, seen = 0, []
        for index in range(20, 30):
            image = (tmp_path / "data" / "blob" / f"{index}.png").read_bytes()
            body = client.post("/v1/models/blob/explain", files={"file": ("a", image)}).json()
            heat = np.array(body["explanation"]["map"])
            cell = size / heat.shape[0]
            peak = [int(v) for v in np.unravel_index(np.argmax(heat), heat.shape)]
            # the peak cell must overlap the 20 x 20 blob
            on_blob = all(
                p * cell < centre + 10 and centre - 10 < (p + 1) * cell
                for p, centre in zip(peak, centres[index], strict=True)
            )
            hits += body["label"] == "blob" and on_blob
            seen.append((body["label"], peak, centres[index]))
        assert hits >= 8, seen


def test_ensemble_ship_and_reexport(tmp_path: Path) -> None:
    from app.inference.store import load_model_dir, sha256_file
    from training.pipeline import run
    from training.reexport import reexport
    from training.train import TrainConfig

    blob_dataset(tmp_path / "data")
    config = TrainConfig(image_size=32, epochs=1, batch_size=8)
    request = tiny_request(tmp_path, "ens", config, folds=2, ship="ensemble")
    folder = run(request)
    card = json.loads((folder / "metadata.json").read_text())
    assert card["architecture"]["ensemble_members"] == 2
    assert card["output"]["activation_map"] == "class_activation"
    per_fold = json.loads((folder / "report" / "metrics.json").read_text())["per_fold"]
    assert all(isinstance(fold["best_epoch"], int) for fold in per_fold)  # one member each
    assert len(list((tmp_path / "runs" / "ens" / "1").glob("logits-*.keras"))) == 2
    difference = reexport(tmp_path / "runs" / "ens" / "1", folder, tmp_path / "data")
    assert difference <= 1e-4
    refreshed = json.loads((folder / "metadata.json").read_text())
    assert refreshed["sha256"] == sha256_file(folder / "model.onnx")
    assert "re-exported" in refreshed["changelog"][-1]
    assert load_model_dir(folder, "ens", 1, Settings(intra_op_threads=1)).card.version == 1


def test_several_members_per_fold_are_scored_as_their_mean(tmp_path: Path) -> None:
    from training.crossval import cross_validate
    from training.pipeline import TrainRequest, run
    from training.train import TrainConfig, predict_logits

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, (16, 24, 24, 1)).astype(np.float32)
    y = np.array([0, 1] * 8)
    x[y == 1, 8:16, 14:22] = 1.0  # class 1: a bright patch on the right
    config = TrainConfig(image_size=24, epochs=1, batch_size=8, patience=1)
    cv = cross_validate(x, y, np.arange(16), ["a", "b"], config, 2, tmp_path, None, 2)
    assert len(cv.models) == 4 and len(cv.histories) == 4
    first = cv.fold_of == 0
    each = [predict_logits(m, x[first], config.tta_flip) for m in cv.models[:2]]
    assert not np.allclose(each[0], each[1])  # two seeds, two different models
    assert np.allclose(cv.logits[first], (each[0] + each[1]) / 2, atol=1e-5)
    assert len(cv.per_fold[0]["best_epoch"]) == 2
    blob_dataset(tmp_path / "data", per_class=6)
    request = tiny_request(tmp_path, "seeds", config, 2, ship="ensemble", members_per_fold=2)
    card = json.loads((run(request) / "metadata.json").read_text())
    assert card["architecture"]["ensemble_members"] == 4  # 2 folds x 2 members, all shipped
    assert card["training"]["members_per_fold"] == 2
    assert "on the fold it is scored on" in card["evaluation"]["protocol"]
    with pytest.raises(ValueError, match="--ship ensemble"):
        tiny_request(tmp_path, "x", config, folds=5, ship="final", members_per_fold=2)
    with pytest.raises(ValueError, match="at least 1"):
        TrainRequest(
            tmp_path, "x", tmp_path, config, InputSpec(height=24, width=24), members_per_fold=0
        )


def test_inner_validation_keeps_the_scored_fold_out_of_every_choice(tmp_path: Path) -> None:
    """With --inner-validation, each fold stops on a grouped part of its own training images;
    the scored fold is only watched, and the watched score at the kept epoch is the kept
    model's score."""
    from training.crossval import cross_validate, stopping_split
    from training.data import grouped_folds
    from training.pipeline import TrainRequest, run
    from training.train import TrainConfig, best_epoch, make_dataset

    rng = np.random.default_rng(5)
    x = rng.uniform(0, 0.2, (40, 24, 24, 1)).astype(np.float32)
    y = np.array([0, 1] * 20)
    x[y == 1, 8:16, 14:22] = 1.0
    groups = np.arange(40) // 4 * 2 + y  # pairs of one class stay together
    config = TrainConfig(image_size=24, epochs=4, batch_size=8, patience=2, inner_validation=0.25)
    train_idx, val_idx = grouped_folds(y, groups, 2, config.seed)[0]
    fit_idx, stop_idx = stopping_split(train_idx, val_idx, y, groups, config)
    assert sorted([*fit_idx, *stop_idx]) == sorted(train_idx)
    assert not set(groups[fit_idx]) & set(groups[stop_idx])
    assert set(y[stop_idx]) == {0, 1} and 4 <= len(stop_idx) <= 6  # a quarter of 20, in pairs
    unchanged = stopping_split(train_idx, val_idx, y, groups, TrainConfig())
    assert unchanged[0] is train_idx and unchanged[1] is val_idx

    cv = cross_validate(x, y, groups, ["a", "b"], config, 2, tmp_path)
    fits = zip(cv.histories, cv.notes, cv.models, strict=True)
    for fold, (history, notes, model) in enumerate(fits):
        choice = notes["epoch_choice"]
        assert len(history["scored_accuracy"]) == len(history["val_loss"])
        assert choice["epoch_kept"] == best_epoch(history, config.epochs // 4)
        self_chosen = choice["epoch_if_chosen_on_scored"]
        assert self_chosen == best_epoch(history, config.epochs // 4, key="scored_loss")
        scored = cv.fold_of == fold
        dataset = make_dataset(x[scored], np.eye(2)[y[scored]], config, train=False)
        accuracy = model.evaluate(dataset, verbose=0, return_dict=True)["accuracy"]
        assert abs(accuracy - choice["scored_accuracy_kept"]) < 1e-6

    blob_dataset(tmp_path / "data", per_class=10)
    folder = run(tiny_request(tmp_path, "nested", config, 2, ship="ensemble"))
    card = json.loads((folder / "metadata.json").read_text())
    assert "25% of its own training images" in card["evaluation"]["protocol"]
    notes = json.loads((folder / "report" / "metrics.json").read_text())["stage_notes"]
    assert len(notes) == 2 and all("epoch_choice" in note for note in notes)

    spec = InputSpec(height=24, width=24)
    with pytest.raises(ValueError, match=r"between 0 and 0\.5"):
        TrainRequest(tmp_path, "x", tmp_path, replace(config, inner_validation=0.7), spec)
    with pytest.raises(ValueError, match="needs cross-validation"):
        TrainRequest(tmp_path, "x", tmp_path, config, spec, folds=0)


def test_pretrained_backbone_two_stages(tmp_path: Path) -> None:
    """A local weights file: stage 1 on cached backbone features (speed-up measured), stage 2
    fine-tunes the tail; exports with parity."""
    import keras

    from training.pipeline import run
    from training.train import TrainConfig

    weights = tmp_path / "resnet50_notop.weights.h5"
    keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    ).save_weights(weights)
    blob_dataset(tmp_path / "data", per_class=8)
    config = TrainConfig(
        arch="resnet50",
        weights=str(weights),
        image_size=32,
        epochs=2,
        batch_size=8,
        fine_tune_layers=5,
        fine_tune_epochs=1,
    )
    request = tiny_request(tmp_path, "pre", config, folds=0)
    card = json.loads((run(request) / "metadata.json").read_text())
    cache = card["training"]["shipped"]["feature_cache"]
    assert cache["speedup_per_epoch"] > 0 and cache["through_base_epoch_seconds"] > 0
    assert card["evaluation"]["parity_max_abs_diff"] <= 1e-4


def test_window_and_resolution_augmentations() -> None:
    import tensorflow as tf
    import typer

    from training.commands import parse_augment
    from training.train import random_gamma, random_resolution

    batch = tf.constant(np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32))
    assert random_gamma(batch, 0.0) is batch and random_resolution(batch, 1.0) is batch
    curved = random_gamma(batch, 0.5).numpy()
    assert curved.min() >= 0 and curved.max() <= 1 and not np.allclose(curved, batch.numpy())
    # order is kept: a gamma curve is monotonic
    assert np.array_equal(np.argsort(curved[0].ravel()), np.argsort(batch.numpy()[0].ravel()))
    blurred = [random_resolution(batch, 0.25).numpy() for _ in range(5)]
    assert all(b.shape == (4, 32, 32, 1) for b in blurred)
    assert min(b.std() for b in blurred) < batch.numpy().std()  # detail lost at least once
    assert parse_augment("zoom=0.3,gamma=0.2")["gamma"] == 0.2
    with pytest.raises(typer.BadParameter, match="unknown augmentation"):
        parse_augment("sharpness=1")


def test_int8_variant_is_measured_and_served(tmp_path: Path) -> None:
    import onnx

    from training.pipeline import run
    from training.quantize import quantize_model_dir
    from training.train import TrainConfig

    blob_dataset(tmp_path / "data")
    config = TrainConfig(image_size=32, epochs=2, batch_size=8)
    source = run(tiny_request(tmp_path, "blob", config, folds=0))
    variant = quantize_model_dir(source, tmp_path / "data", tmp_path / "models", None, 8)
    assert variant == tmp_path / "models" / "blob-int8" / "1"
    card = json.loads((variant / "metadata.json").read_text())
    report = card["quantization"]
    assert report["source"] == "blob/1" and report["images"] == 24 - 8
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float32"]
    assert 0 <= report["agreement"] <= 1 and report["latency_ms"]["batch_8"]["int8"] > 0
    graph = onnx.load(variant / "model.onnx").graph
    graph_ops = {node.op_type for node in graph.node}
    assert "QuantizeLinear" in graph_ops and "DequantizeLinear" in graph_ops
    # the fused group norms' statistics stay float: their matmuls read no dequantised tensor
    dequantised = {
        out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output
    }
    norm_matmuls = [n for n in graph.node if n.op_type == "MatMul" and "_norm" in n.name]
    assert norm_matmuls and not any(set(n.input) & dequantised for n in norm_matmuls)
    dense = [n for n in graph.node if n.op_type == "MatMul" and "_norm" not in n.name]
    assert any(set(n.input) & dequantised for n in dense)  # the heads' matmuls are quantised
    settings = Settings(models_dir=tmp_path / "models", intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        image = (tmp_path / "data" / "left" / "0.png").read_bytes()
        answers = [
            client.post(f"/v1/models/{name}/predict", files={"file": ("a.png", image)}).json()
            for name in ("blob", "blob-int8")
        ]
    float_p, int8_p = (a["probabilities"]["left"] for a in answers)
    assert abs(float_p - int8_p) <= report["max_probability_change"] + 0.05


def test_ema_weights_are_the_ones_validated_and_kept(tmp_path: Path) -> None:
    """With --ema the training steps are the same as without (same seed, same training loss),
    but validation scores the averaged weights, and the epoch it picks is returned exactly."""
    from training.train import TrainConfig, fit, make_dataset

    rng = np.random.default_rng(3)
    x = rng.random((24, 32, 32, 1)).astype(np.float32)
    y = np.array([0, 1] * 12)
    x[y == 1, 10:20, 10:20] += 1.0
    validation = (x[:8], y[:8])
    runs = {}
    with deterministic_ops():
        for ema in (0.0, 0.9):
            config = TrainConfig(image_size=32, epochs=6, batch_size=8, patience=2, ema=ema)
            runs[ema] = fit(x[8:], y[8:], 2, config, validation, tmp_path / str(ema))
    plain, averaged = runs[0.0].history, runs[0.9].history
    assert abs(plain["loss"][0] - averaged["loss"][0]) < 1e-6
    assert abs(plain["val_loss"][0] - averaged["val_loss"][0]) > 1e-4
    best = int(np.argmin(averaged["val_loss"]))
    dataset = make_dataset(validation[0], np.eye(2)[validation[1]], config, train=False)
    evaluated = runs[0.9].model.evaluate(dataset, verbose=0)[0]
    assert abs(evaluated - averaged["val_loss"][best]) < 1e-4


def test_reexport_keeps_the_member_order_past_nine(tmp_path: Path) -> None:
    from training.reexport import kept_members

    for index in (1, 2, 10, 11, 9):
        (tmp_path / f"logits-{index}.keras").touch()
    (tmp_path / "logits-old.keras").touch()
    assert [p.name for p in kept_members(tmp_path)] == [
        f"logits-{index}.keras" for index in (1, 2, 9, 10, 11)
    ]
