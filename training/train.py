"""Fitting: augmentation, class weights, callbacks, frozen-base feature caching, fine-tuning."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.architectures import backbone_of, build, set_trainable_tail

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in the model card)."""

    arch: str = "compact"
    weights: str = "none"
    head: str = "gap"
    width: float = 1.0  # the compact CNN's channel multiplier
    image_size: int = 128
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    fine_tune_layers: int = 20
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    patience: int = 10
    dropout: float = 0.3
    label_smoothing: float = 0.05
    ema: float = 0.0  # momentum of an exponential moving average of the weights; 0: off
    # Cross-validation: the fraction of each fold's training part held out to stop on (early
    # stopping, learning-rate schedule, kept epoch); 0: stop on the scored fold itself.
    inner_validation: float = 0.0
    seed: int = 42
    tta_flip: bool = True
    augment: dict[str, float] = field(
        default_factory=lambda: {
            "rotation": 0.05,
            "zoom": 0.2,
            "translation": 0.08,
            "contrast": 0.3,
            "brightness": 0.15,
            "gamma": 0.0,
            "resolution": 1.0,
        }
    )

    @property
    def pretrained(self) -> bool:
        return self.arch != "compact" and self.weights != "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    model: keras.Model
    history: dict[str, list[float]]
    seconds: float
    best_epoch: int
    notes: dict[str, Any] = field(default_factory=dict)


def augmenter(config: TrainConfig) -> keras.Sequential:
    """Training-only augmentation covering scale, crop, pose, contrast and window changes."""
    a, seed = config.augment, config.seed
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(a["rotation"], fill_mode="constant", seed=seed),
            layers.RandomZoom(a["zoom"], fill_mode="constant", seed=seed),
            layers.RandomTranslation(
                a["translation"], a["translation"], fill_mode="constant", seed=seed
            ),
            layers.RandomContrast(a["contrast"], seed=seed),
            layers.RandomBrightness(a["brightness"], value_range=(0.0, 1.0), seed=seed),
        ],
        name="augment",
    )


def random_gamma(batch: tf.Tensor, spread: float) -> tf.Tensor:
    """Per-image gamma exp(U(-spread, spread)): a different CT window or display curve."""
    if spread <= 0:
        return batch
    exponent = tf.exp(tf.random.uniform([tf.shape(batch)[0], 1, 1, 1], -spread, spread))
    return tf.pow(tf.clip_by_value(batch, 1e-6, 1.0), exponent)


def random_resolution(batch: tf.Tensor, lowest: float) -> tf.Tensor:
    """Down- then up-sample the batch by a factor U(lowest, 1): a lower-resolution source."""
    if lowest >= 1:
        return batch
    size = tf.shape(batch)[1:3]
    factor = tf.random.uniform([], lowest, 1.0)
    small = tf.cast(tf.math.round(tf.cast(size, tf.float32) * factor), tf.int32)
    return tf.image.resize(tf.image.resize(batch, small, "area"), size, "bilinear")


def make_dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig, train: bool) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if train:
        data = data.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size)
    if train:
        augment, extra = augmenter(config), config.augment

        def transform(batch: tf.Tensor) -> tf.Tensor:
            batch = random_resolution(augment(batch, training=True), extra.get("resolution", 1.0))
            return random_gamma(tf.clip_by_value(batch, 0.0, 1.0), extra.get("gamma", 0.0))

        data = data.map(lambda a, b: (transform(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def class_weights(y: np.ndarray, classes: int) -> dict[int, float]:
    """Balanced weights: n / (classes * count)."""
    counts = np.bincount(y, minlength=classes).astype(float)
    return {i: float(len(y) / (classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def compile_model(
    model: keras.Model, learning_rate: float, config: TrainConfig, classes: int
) -> None:
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing
    )
    optimizer = keras.optimizers.Adam(
        learning_rate, use_ema=config.ema > 0, ema_momentum=config.ema or 0.99
    )
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    config: TrainConfig,
    validation: tuple[np.ndarray, np.ndarray] | None,
    work_dir: Path,
    epochs: int | None = None,
    watched: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train one model; with `validation`, early stopping picks the best epoch; `epochs` fixes
    the count instead (of the fine-tuning stage, for a pretrained backbone). `watched`
    images are scored after every epoch (`scored_loss`, `scored_accuracy` in the history)
    without influencing training."""
    keras.utils.set_random_seed(config.seed)
    started = time.perf_counter()
    model = build(
        config.arch,
        config.image_size,
        classes,
        config.weights,
        config.head,
        config.dropout,
        config.width,
    )
    notes: dict[str, Any] = {}
    if config.pretrained:
        notes["feature_cache"] = train_head_on_cached_features(model, x, y, classes, config)
        set_trainable_tail(model, config.fine_tune_layers)
        rate, stage_epochs = config.fine_tune_learning_rate, epochs or config.fine_tune_epochs
    else:
        rate, stage_epochs = config.learning_rate, epochs or config.epochs
    compile_model(model, rate, config, classes)
    history = model.fit(
        make_dataset(x, _one_hot(y, classes), config, train=True),
        validation_data=None
        if validation is None
        else make_dataset(validation[0], _one_hot(validation[1], classes), config, train=False),
        epochs=stage_epochs,
        class_weight=class_weights(y, classes),
        callbacks=callbacks(
            work_dir,
            config,
            validation is not None,
            None
            if watched is None
            else make_dataset(watched[0], _one_hot(watched[1], classes), config, train=False),
        ),
        verbose=2,
        shuffle=False,
    ).history
    best = best_epoch(history, stopping_starts(config) if validation is not None else 0)
    return FitResult(model, history, time.perf_counter() - started, best, notes)


class ScoreWatched(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
    """After each epoch, the compiled loss and accuracy on images training never uses, logged
    as `scored_loss` / `scored_accuracy`: what a fold's score would be had training stopped
    there, to measure what choosing the epoch on the scored images themselves adds."""

    def __init__(self, data: tf.data.Dataset) -> None:
        super().__init__()
        self.data = data

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        scores = self.model.evaluate(self.data, verbose=0, return_dict=True)
        if logs is not None:
            logs["scored_loss"] = float(scores["loss"])
            logs["scored_accuracy"] = float(scores["accuracy"])


def stopping_starts(config: TrainConfig) -> int:
    """Epochs before early stopping starts tracking the monitored loss (its `start_from_epoch`):
    the kept epoch is never one of them."""
    return config.epochs // 4


def callbacks(
    work_dir: Path,
    config: TrainConfig,
    validate: bool,
    watched: tf.data.Dataset | None = None,
) -> list[keras.callbacks.Callback]:
    monitor = "val_loss" if validate else "loss"
    work_dir.mkdir(parents=True, exist_ok=True)
    # With an EMA, validation, checkpoints and early stopping all see the averaged weights: the
    # swap comes first so the callbacks after it (the watcher too) act on what will be shipped.
    first = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema > 0 else []
    if watched is not None:
        first.append(ScoreWatched(watched))
    found = [
        *first,
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-6
        ),
        keras.callbacks.ModelCheckpoint(
            str(work_dir / "best.weights.h5"),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.CSVLogger(str(work_dir / "history.csv")),
    ]
    if validate:
        found.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=config.patience,
                restore_best_weights=True,
                start_from_epoch=stopping_starts(config),
            )
        )
    return found


def train_head_on_cached_features(
    model: keras.Model, x: np.ndarray, y: np.ndarray, classes: int, config: TrainConfig
) -> dict[str, float]:
    """Stage 1: the frozen backbone's features are computed once, then the head trains on them.

    Returns the measured seconds per epoch both ways (through the frozen base vs cached)."""
    base = backbone_of(model)
    if base is None:
        raise ValueError(f"{model.name} has no pretrained backbone to freeze")
    base.trainable = False
    head_layers = _head_layers(model)
    features_out = head_layers[0].input  # the backbone's output inside the outer graph
    extractor = keras.Model(model.input, features_out)
    head = keras.Sequential([keras.Input(features_out.shape[1:]), *head_layers], name="head")
    labels = _one_hot(y, classes)
    compile_model(model, config.learning_rate, config, classes)
    started = time.perf_counter()
    model.fit(x, labels, batch_size=config.batch_size, epochs=1, verbose=0)
    through_base_epoch = time.perf_counter() - started
    started = time.perf_counter()
    features = extractor.predict(x, batch_size=config.batch_size, verbose=0)
    extract_seconds = time.perf_counter() - started
    compile_model(head, config.learning_rate, config, classes)
    started = time.perf_counter()
    head.fit(
        features,
        labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        class_weight=class_weights(y, classes),
        verbose=0,
    )
    cached_epoch = (time.perf_counter() - started) / config.epochs
    log.info(
        "frozen base: %.2fs/epoch through the base, %.3fs/epoch on cached features",
        through_base_epoch,
        cached_epoch,
    )
    return {
        "through_base_epoch_seconds": through_base_epoch,
        "extract_seconds_once": extract_seconds,
        "cached_epoch_seconds": cached_epoch,
        "speedup_per_epoch": through_base_epoch / max(cached_epoch, 1e-9),
    }


def _head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    base = backbone_of(model)
    index = model.layers.index(base)
    return list(model.layers[index + 1 :])


def predict_logits(model: keras.Model, x: np.ndarray, tta_flip: bool) -> np.ndarray:
    """Logits, averaged with those of the mirrored images when `tta_flip`."""
    logits = model.predict(x, batch_size=64, verbose=0)
    if tta_flip:
        logits = (logits + model.predict(x[:, :, ::-1], batch_size=64, verbose=0)) / 2
    averaged: np.ndarray = np.asarray(logits, dtype=np.float32)
    return averaged


def _one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    encoded: np.ndarray = np.eye(classes, dtype=np.float32)[y]
    return encoded


def best_epoch(history: dict[str, list[float]], start_from: int = 0, key: str = "") -> int:
    """The 1-based epoch of the lowest `key` loss (default: validation, else training) among
    epochs `start_from` + 1 onwards, where early stopping starts to track it."""
    losses = history[key] if key else history.get("val_loss") or history["loss"]
    start = min(start_from, len(losses) - 1)
    return start + int(np.argmin(losses[start:])) + 1
