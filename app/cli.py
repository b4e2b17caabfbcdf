"""The `ctscan` command line: serve, predict, and the training commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.config import Settings

cli = typer.Typer(
    help="CT-scan classification: serve, predict, train, evaluate, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (CTSCAN_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CTSCAN_PORT)")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Model store (CTSCAN_MODELS_DIR)")] = None,
) -> None:
    """Run the HTTP service with uvicorn."""
    import uvicorn

    from app.logging_setup import configure_logging
    from app.main import create_app

    settings = _settings(models_dir=models_dir, host=host, port=port)
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `ctscan serve` runs uvicorn: our HTTP protocol (one write per answer) and our access
    log (`app.access_log`) instead of uvicorn's."""
    from app.http_protocol import TurnBufferedHttpToolsProtocol

    return {
        "http": TurnBufferedHttpToolsProtocol,
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "timeout_keep_alive": settings.keep_alive_s,
        "access_log": False,
    }


@cli.command()
def predict(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, help="Image or DICOM; a folder of independent images gives a CSV"
        ),
    ],
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the default model)")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Pin a model version")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Model store (CTSCAN_MODELS_DIR)")] = None,
) -> None:
    """Classify one file without a server and print the result as JSON; for a folder, one CSV
    row per image (path, label, verdict, score, probabilities) with a progress bar on stderr."""
    from app.errors import ServiceError
    from app.inference.predict import predict_bytes
    from app.inference.store import ModelStore

    settings = _settings(models_dir=models_dir)
    store = ModelStore(settings)
    store.load_all()
    try:
        loaded = store.get(model or store.default_name(), version)
        if file.is_dir():
            from app.folder_csv import write_folder_csv

            write_folder_csv(loaded, file, settings.max_image_pixels)
            return
        result = predict_bytes(loaded, file.read_bytes(), settings.max_image_pixels)
    except ServiceError as exc:
        typer.echo(f"error: {exc.title}: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2))


@cli.command(name="predict-study")
def predict_study(
    path: Annotated[
        Path, typer.Argument(exists=True, help="A folder or zip of DICOM files, or one file")
    ],
    model: Annotated[str, typer.Option(help="Model name")],
    version: Annotated[int | None, typer.Option(help="Pin a model version")] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Model store (CTSCAN_MODELS_DIR)")] = None,
) -> None:
    """Classify a whole series without a server (the study endpoint's code path), with a
    progress bar on stderr, and print the answer as JSON."""
    from rich.console import Console
    from rich.progress import Progress

    from app.api.studies import study_limits
    from app.errors import ServiceError
    from app.inference.store import ModelStore
    from app.studies.pipeline import StudySettings, analyse_study
    from app.studies.sources import open_path

    settings = _settings(models_dir=models_dir)
    store = ModelStore(settings)
    store.load_all()
    run = StudySettings.of(settings)
    try:
        loaded = store.get(model, version)
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("slices", total=None)
            source = open_path(path, study_limits(settings))
            result = analyse_study(
                loaded,
                source,
                run,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ServiceError as exc:
        typer.echo(f"error: {exc.title}: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2))


def _settings(**overrides: object) -> Settings:
    """The settings from the environment (and `.env`) with the given options on top; a bad
    value ends the command with one line per problem, named as its variable, and status 2."""
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        for line in setting_errors(exc):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None


def setting_errors(exc: ValidationError) -> list[str]:
    """Each invalid setting as `CTSCAN_NAME: what is wrong (got VALUE)`."""
    lines = []
    for error in exc.errors():
        name = f"CTSCAN_{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message} (got {error.get('input')!r})")
    return lines


def main() -> None:
    """Console entry point; the training subcommands come from `training.cli` (lazy TF)."""
    from training.cli import register  # the service itself never imports `training`

    register(cli)
    cli()
