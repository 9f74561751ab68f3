"""The ``groundedit`` command line: run the pipeline, show a run's status, report on it, export and
evaluate edits, make a tiny input, train Bagel on the shards and edit with the result.

Each command group is a module that registers its commands on :data:`groundedit.cli.app.app`;
:func:`main` runs the app and turns expected failures into one ``error:`` line.
"""

from __future__ import annotations

import sys

import typer

# command modules register their commands on the app when imported
from groundedit.cli import results, run, tools, train  # noqa: F401
from groundedit.cli.app import CliError, app, console
from groundedit.specs import SpecError


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors and expected failures print one line and exit non-zero."""
    from groundedit.engine.executors import ExecutorError
    from groundedit.engine.pipeline import PipelineError
    from groundedit.engine.runlock import RunLocked
    from groundedit.engine.runner import StageFailed
    from groundedit.evaluation.judge import JudgeError
    from groundedit.train.errors import TrainError

    try:
        rc = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: bad flag, missing option, unknown command
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (
        CliError,
        SpecError,
        PipelineError,
        ExecutorError,
        RunLocked,
        StageFailed,
        JudgeError,
        TrainError,
        FileNotFoundError,
        ValueError,
    ) as e:
        console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return 1
    # typer turns a Ctrl-C it catches itself (outside a command's own handler) into a return of 130.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
