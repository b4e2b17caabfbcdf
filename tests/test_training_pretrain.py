"""`ctscan pretrain`: a compact backbone from other datasets, the target's images left out by
content, and `ctscan train --weights PATH` starting from it. Needs the `train` extra."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from app.imaging.preprocess import InputSpec
from tests.test_training_models import blob_dataset, tiny_request

pytestmark = pytest.mark.train


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, Path]:
    """Two source datasets and a target, one target image copied into a source."""
    roots = {name: tmp_path / "datasets" / name for name in ("first", "second", "target")}
    for seed, root in enumerate(roots.values()):
        blob_dataset(root, per_class=6, size=32, seed=seed)
    shutil.copy(roots["target"] / "left" / "0.png", roots["first"] / "left" / "copy.png")
    return roots


def pretrain_request(roots: dict[str, Path], output: Path) -> Any:
    """Pretrain on the two sources, leaving the target out, writing `output`."""
    from training.pretrain import PretrainRequest
    from training.train import TrainConfig

    return PretrainRequest(
        sources=[roots["first"], roots["second"]],
        exclude=[roots["target"]],
        output=output,
        config=TrainConfig(image_size=32, epochs=1, batch_size=8),
        spec=InputSpec(height=32, width=32),
        cache_dir=None,
    )


def test_sources_are_labelled_by_dataset_and_the_target_is_left_out(
    datasets: dict[str, Path],
) -> None:
    from training.pretrain import pretraining_samples

    samples, report, left_out = pretraining_samples(
        [datasets["first"], datasets["second"]], [datasets["target"]]
    )
    assert left_out == 1
    assert report.counts == {"first/left": 6, "first/right": 6, "second/left": 6, "second/right": 6}
    target_files = {p.read_bytes() for p in datasets["target"].rglob("*.png")}
    assert not [s for s in samples if s.path.read_bytes() in target_files]
    _, _, nothing_left_out = pretraining_samples([datasets["first"]], [])
    assert nothing_left_out == 0


def test_backbone_is_saved_and_training_starts_from_it(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    from training.architectures import build, compact_backbone
    from training.pipeline import run
    from training.pretrain import pretrain
    from training.train import TrainConfig

    weights = pretrain(pretrain_request(datasets, tmp_path / "bb" / "ct.weights.h5"))
    provenance = json.loads((tmp_path / "bb" / "ct.json").read_text())
    assert provenance["sources"] == ["first", "second"]
    assert provenance["initialisation"].startswith("random weights")
    assert provenance["excluded_datasets"] == ["target"]
    assert provenance["excluded_images_by_content"] == 1 and provenance["images"] == 24
    assert sorted(p.name for p in (tmp_path / "bb").iterdir()) == ["ct.json", "ct.weights.h5"]

    started = compact_backbone(build("compact", 32, 3, weights=str(weights))).get_weights()
    again = compact_backbone(build("compact", 48, 2, weights=str(weights))).get_weights()
    fresh = compact_backbone(build("compact", 32, 3)).get_weights()
    for mine, theirs in zip(started, again, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert any(not np.array_equal(a, b) for a, b in zip(started, fresh, strict=True))

    shutil.copytree(datasets["target"], tmp_path / "data")
    config = TrainConfig(image_size=32, epochs=1, batch_size=8, weights=str(weights))
    card = json.loads((run(tiny_request(tmp_path, "t", config, 0)) / "metadata.json").read_text())
    assert card["architecture"]["weights_init"] == str(weights)
    assert card["architecture"]["pretraining"]["excluded_datasets"] == ["target"]


def test_efficientnet_lite0_pretrains_from_imagenet_and_training_starts_from_it(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    """Cross-task pretraining from the ImageNet start: the tail moves away from the ImageNet
    weights, the frozen part keeps them, the record names the checkpoint, and a Lite0 at
    another input size loads the result."""
    from tests.test_efficientnet_lite import tiny_lite0_config
    from training import efficientnet_lite
    from training.architectures import WeightsUnavailable, backbone_of, build
    from training.pretrain import pretrain

    request = pretrain_request(datasets, tmp_path / "bb" / "lite.weights.h5")
    request.config = tiny_lite0_config(learning_rate=1e-2, fine_tune_learning_rate=1e-2)
    request.spec = InputSpec(height=64, width=64)  # the config's size
    weights = pretrain(request)
    provenance = json.loads((tmp_path / "bb" / "lite.json").read_text())
    assert provenance["arch"] == "efficientnet-lite0" and provenance["fine_tune_layers"] == 10
    assert provenance["initialisation"]["package"] == efficientnet_lite.PACKAGE
    assert len(provenance["initialisation"]["sha256"]) == 64

    loaded = backbone_of(build("efficientnet-lite0", 48, 3, weights=str(weights)))
    imagenet = backbone_of(build("efficientnet-lite0", 48, 3, weights="imagenet"))
    assert loaded is not None and imagenet is not None
    same = [
        np.array_equal(mine, theirs)
        for mine, theirs in zip(loaded.get_weights(), imagenet.get_weights(), strict=True)
    ]
    assert same[0] and not all(same)  # the stem stayed frozen, the tail learned
    with pytest.raises(WeightsUnavailable, match="pretrain --arch efficientnet-lite0"):
        build("efficientnet-lite0", 32, 2, weights=str(tmp_path / "bb" / "lite.json"))


def test_unusable_backbone_files_are_refused(tmp_path: Path) -> None:
    import keras

    from training.architectures import WeightsUnavailable, build

    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build("compact", 32, 2, weights=str(tmp_path / "missing.weights.h5"))
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(WeightsUnavailable, match="ctscan pretrain"):
        build("compact", 32, 2, weights=str(garbage))
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save_weights(other)
    with pytest.raises(WeightsUnavailable, match="ctscan pretrain"):
        build("compact", 32, 2, weights=str(other))


def test_output_name_must_be_a_keras_weights_file(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    from training.pretrain import pretrain

    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        pretrain(pretrain_request(datasets, tmp_path / "backbone.h5"))
    assert not (tmp_path / "backbone.h5").exists()


def test_a_wider_compact_cnn_has_more_channels_and_needs_a_backbone_as_wide(
    tmp_path: Path,
) -> None:
    from training.architectures import WeightsUnavailable, build, compact_backbone

    def channels(width: float) -> list[int]:
        model = build("compact", 32, 2, width=width)
        names = ("stem_conv", *(f"block{i}_proj" for i in range(1, 5)))
        return [model.get_layer(name).filters for name in names]

    assert channels(1.0) == [24, 32, 64, 128, 192]
    assert channels(1.5) == [40, 48, 96, 192, 288]
    wide = tmp_path / "wide.weights.h5"
    saved = compact_backbone(build("compact", 32, 2, width=1.5))
    saved.save_weights(wide)
    loaded = compact_backbone(build("compact", 48, 3, weights=str(wide), width=1.5))
    for mine, theirs in zip(saved.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(WeightsUnavailable, match="ctscan pretrain"):
        build("compact", 32, 2, weights=str(wide))
    with pytest.raises(ValueError, match="compact CNN only"):
        build("resnet50", 32, 2, width=1.5)


def test_the_command_refuses_an_architecture_it_cannot_pretrain(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    import typer
    from typer.testing import CliRunner

    from training.cli import register

    cli = typer.Typer()
    register(cli)
    output = tmp_path / "bb" / "vgg.weights.h5"
    result = CliRunner().invoke(
        cli,
        ["pretrain", "--data", str(datasets["first"]), "--arch", "vgg19", "--output", str(output)],
    )
    assert result.exit_code == 2
    assert "compact, efficientnet-lite0" in result.output
    assert not output.parent.exists()
