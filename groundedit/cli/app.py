"""The typer application every command module registers on, the console, and the one-line error."""

from __future__ import annotations

import typer
import typer.core
from rich.console import Console

from groundedit import __version__
from groundedit.specs import available_profiles

# the order `groundedit --help` lists the commands in: a run's life, then tools
COMMANDS = ("run", "status", "report", "export", "eval", "train", "edit", "fixture", "doctor")


class _Commands(typer.core.TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMANDS.index(n) if n in COMMANDS else len(COMMANDS))


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Build grounding-oriented image-editing data from SA-1B photos.",
)
# soft_wrap: a message is one line however narrow the terminal (or a pipe's 80 columns); rich would
# otherwise fold paths mid-name, and a copied path would not work
console = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """An error shown to the user as one line."""


def _version(value: bool) -> None:
    if value:
        print(f"groundedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """groundedit: the InterCoG data engine."""


def check_profile(profile: str) -> None:
    if profile not in available_profiles():
        raise CliError(
            f"unknown profile '{profile}' (choose from: {', '.join(sorted(available_profiles()))})"
        )
