"""The `ctscan` training subcommands (train, pretrain, evaluate, ...), registered lazily."""

from __future__ import annotations

import typer


def register(cli: typer.Typer) -> None:
    """Add the training subcommands to the `ctscan` command line."""
    from training import commands

    cli.command(name="train")(commands.train)
    cli.command(name="pretrain")(commands.pretrain)
    cli.command(name="evaluate")(commands.evaluate)
    cli.command(name="robustness")(commands.robustness)
    cli.command(name="export")(commands.export)
    cli.command(name="quantize")(commands.quantize)
    cli.command(name="compare")(commands.compare)
    cli.command(name="nested")(commands.nested)
    cli.command(name="applicability")(commands.applicability)
