"""Where a lone request's time goes inside the service (on demand, loopback only, bounded).

    python -m tests.benchmarks.c1_breakdown --model chest-ct-cancer

Starts the service in a child process, run as `ctscan serve` runs it, with timers
around the app (an outermost ASGI wrapper that also notes when the body has arrived and when
each response message is handed to uvicorn, which writes both at the end of the turn), around
decode + preprocessing and around `session.run`; sends `--requests` uploads one after another
over real HTTP; prints the median of each stage as a markdown table. What the app spends besides
decoding and inference is the service's own overhead at concurrency 1; what the client measures
beyond the app is uvicorn's HTTP handling, that write and the client itself."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks.run import MULTIPART, WireClient, multipart, sample_images
from tests.server import wait_ready

# (label, from mark, to mark), in the order a request passes them
STAGES = [
    ("routing, middleware, dependencies, body received and parsed", "enter", "body"),
    ("rest of the form, upload read, to a decode thread (none when alone)", "body", "decode"),
    ("decode + preprocessing", "decode", "decoded"),
    ("decode thread → event loop → batcher thread (none when alone)", "decoded", "run"),
    ("session.run", "run", "ran"),
    ("back to the event loop (none when alone), answer built", "ran", "head"),
    ("response head handed to uvicorn", "head", "head_sent"),
    ("response body handed to uvicorn, app returns", "head_sent", "leave"),
]


def serve(models_dir: Path, port: int, count: int) -> None:
    """The service with stage timers; prints one JSON line of medians after `count` uploads."""
    import uvicorn

    import app.inference.batchers as batchers
    import app.inference.predict as predict
    from app.cli import uvicorn_options
    from app.config import Settings
    from app.logging_setup import configure_logging
    from app.main import create_app

    marks: dict[str, float] = {}
    rows: list[dict[str, float]] = []

    def timed(function: Callable[..., Any], start: str, end: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[start] = time.perf_counter()
            result = function(*args, **kwargs)
            marks[end] = time.perf_counter()
            return result

        return wrapper

    for module, attribute, start, end in (
        (predict, "prepare_for_batch", "decode", "decoded"),
        (batchers, "run_rows", "run", "ran"),
    ):  # the names the request path looks up at call time
        setattr(module, attribute, timed(getattr(module, attribute), start, end))
    settings = Settings(models_dir=models_dir, host="127.0.0.1", port=port)
    inner = create_app(settings)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await inner(scope, receive, send)
            return
        marks.clear()
        marks["enter"] = time.perf_counter()

        async def receive_marked() -> Any:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body"):
                marks.setdefault("body", time.perf_counter())
            return message

        async def send_marked(message: Any) -> None:
            first = message["type"] == "http.response.start"
            if first:
                marks["head"] = time.perf_counter()
            await send(message)
            if first:
                marks["head_sent"] = time.perf_counter()

        await inner(scope, receive_marked, send_marked)
        marks["leave"] = time.perf_counter()
        rows.append(dict(marks))
        if len(rows) == count:
            print(json.dumps(medians(rows[count // 10 :])), flush=True)

    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(app, **uvicorn_options(settings))  # as `ctscan serve` runs it, access log included


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """Median milliseconds of each stage and of the whole app, over the requests that have every
    mark (a failed request has not)."""
    complete = [r for r in rows if all(m in r for _, a, b in STAGES for m in (a, b))]
    result = {
        label: statistics.median(r[b] - r[a] for r in complete) * 1000 for label, a, b in STAGES
    }
    result["app"] = statistics.median(r["leave"] - r["enter"] for r in complete) * 1000
    own = [
        r["leave"] - r["enter"] - (r["decoded"] - r["decode"]) - (r["ran"] - r["run"])
        for r in complete
    ]
    result["own"] = statistics.median(own) * 1000
    result["requests"] = len(complete)
    return result


def drive(port: int, name: str, count: int) -> float:
    """Send `count` uploads one after another; the client's median milliseconds."""
    client = WireClient(f"http://127.0.0.1:{port}")
    route = f"/v1/models/{name}/predict"
    requests = [client.request(route, multipart(image), MULTIPART) for image in sample_images(8)]
    times = [client.send(requests[index % 8]) for index in range(count)]
    client.close()
    return statistics.median(times[count // 10 :]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.models_dir, args.port, args.requests)
        return
    command = [sys.executable, "-m", "tests.benchmarks.c1_breakdown", "--serve"]
    command += ["--models-dir", str(args.models_dir), "--port", str(args.port)]
    with tempfile.TemporaryFile("w+") as log:  # its log lines, shown only if it fails
        child = subprocess.Popen(
            [*command, "--requests", str(args.requests)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{args.port}", 60.0, child)
            client_ms = drive(args.port, args.model, args.requests)
            stages = json.loads(child.stdout.readline() if child.stdout else "{}")
        except Exception:
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
            raise
        finally:
            child.terminate()
            child.wait(timeout=30)
    print_table(args.model, stages, client_ms)


def print_table(model: str, stages: dict[str, float], client_ms: float) -> None:
    count = int(stages.pop("requests"))
    app_ms, own_ms = stages.pop("app"), stages.pop("own")
    print(f"## Concurrency 1 breakdown: {model} (medians of {count} requests, ms)\n")
    print("| stage | ms |\n|---|---|")
    for label, value in stages.items():
        print(f"| {label} | {value:.3f} |")
    print(f"| whole app (ASGI call) | {app_ms:.3f} |")
    print(f"| client round trip | {client_ms:.3f} |")
    print(f"\nThe app's own time (app - decode - session.run, per request): {own_ms:.2f} ms;")
    print(f"uvicorn's HTTP handling + client outside the app: {client_ms - app_ms:.2f} ms.")


if __name__ == "__main__":
    main()
