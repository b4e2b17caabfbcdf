"""`ctscan train | evaluate | export | quantize | compare`: registered on the main CLI, lazily."""

from __future__ import annotations

import typer


def register(cli: typer.Typer) -> None:
    """Add the training subcommands to the `ctscan` command line."""
    from training import commands

    cli.command(name="train")(commands.train)
    cli.command(name="evaluate")(commands.evaluate)
    cli.command(name="export")(commands.export)
    cli.command(name="quantize")(commands.quantize)
    cli.command(name="compare")(commands.compare)
