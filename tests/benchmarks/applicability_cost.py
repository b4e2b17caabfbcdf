"""What the applicability check adds to a prediction at batch 1 (on demand, CPU, no HTTP).

    python -m tests.benchmarks.applicability_cost [--rounds 200]

Per shipped model, in alternated rounds: the graph without the check (its `features` output and
the nodes computing it stripped, as before the check existed) running `session.run` for the
probabilities alone, against the served graph running probabilities and features plus the
score in numpy. Prints the medians and their ratio."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from app.config import Settings
from app.inference.predict import run_model
from app.inference.session import create_session
from app.inference.store import LoadedModel
from tests.factories import loaded_store


def without_check(model: LoadedModel, settings: Settings) -> ort.InferenceSession:
    """A session of the model's graph as it was before the check was added, with the service's
    session options (bounded spinning, the shared arena)."""
    graph = onnx.load(str(model.path / "model.onnx"))
    kept = [
        n
        for n in graph.graph.node
        if not any(o.startswith("applicability/") or o == "features" for o in n.output)
    ]
    del graph.graph.node[:]
    graph.graph.node.extend(kept)
    outputs = [o for o in graph.graph.output if o.name != "features"]
    del graph.graph.output[:]
    graph.graph.output.extend(outputs)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(graph, str(path))
        session, _ = create_session(path, model.card, settings, 1)
    return session


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    store = loaded_store(intra_op_threads=2, providers=["CPUExecutionProvider"])
    print("| model | without the check, ms | with it (features + score), ms | ratio |")
    print("|---|---|---|---|")
    for model in store.all_models():
        b, a = compare(model, store.settings, args.rounds)
        print(f"| {model.key} | {b:.2f} | {a:.2f} | {a / b:.3f} |", flush=True)


def compare(model: LoadedModel, settings: Settings, rounds: int) -> tuple[float, float]:
    """Median ms of a batch-1 run without and with the check, measured in alternation."""
    spec = model.card.input
    x = np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), np.float32)
    plain = without_check(model, settings)

    def unchecked() -> object:
        return plain.run([model.card.output.name], {spec.name: x})

    def checked() -> object:
        return run_model(model, x)

    for _ in range(10):
        unchecked(), checked()
    before, after = [], []
    for _ in range(rounds):
        before.append(timed(unchecked))
        after.append(timed(checked))
    return statistics.median(before), statistics.median(after)


if __name__ == "__main__":
    main()
