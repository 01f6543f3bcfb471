"""How a Typer app runs as a command: a failure is one line on stderr (`--debug` shows the traceback), exit
codes as the shell expects. Cheap to import (typer only once an app runs): the agent commands (cli/agent.py,
argparse) report their failures with `fail` without importing typer (~2 s in a TCG guest)."""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


class CliError(Exception):
    """A failure the user can act on: printed as one line on stderr (with the traceback only under --debug).
    `status` is the HTTP status of an error answer (None for any other failure)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def run_app(app: typer.Typer, args: list[str], prog_name: str) -> None:
    import typer

    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except CliError as error:
        fail(str(error), debug)
    except typer.Abort:
        fail("aborted", debug)
    except typer.TyperException as error:  # typer's own click: usage errors and bad parameters
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        if not message.strip():  # a group called without a command: its help was printed
            sys.exit(getattr(error, "exit_code", 2))
        fail(f"{message}{hint}", debug, code=getattr(error, "exit_code", 1))
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    except Exception as error:
        fail(f"{type(error).__name__}: {error} (--debug shows where)", debug)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, debug: bool, code: int = 1) -> None:
    if debug:
        traceback.print_exc()
    print(f"isthmus: error: {message}", file=sys.stderr)
    sys.exit(code)
