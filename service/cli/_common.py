"""Shared CLI plumbing: one console, and turning bad input into exit code 2 with the fix in the message."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

USAGE_ERROR = 2  # the conventional exit code for bad command-line input


def fail_usage(message: str) -> NoReturn:
    fail(message, code=USAGE_ERROR)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """'error: MESSAGE' on stderr and exit `code`. The message is text, not markup (a path or a spec may hold
    brackets), and is not wrapped: a log or a pipe keeps each line whole, and grep finds it."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def describe_validation_error(exc: ValidationError, *, option_names: dict[str, str] | None = None) -> str:
    """One line per problem, naming the command-line option (or field) that has it."""
    option_names = option_names or {}
    lines = []
    for problem in exc.errors():
        path = ".".join(str(p) for p in problem["loc"]) or "input"
        name = option_names.get(path, path)
        lines.append(f"{name}: {problem['msg']}")
    return "\n  ".join(lines)


def cell_text(params: dict[str, Any] | None) -> str:
    """A best cell's coordinates as 'lr 0.125, weight_decay 0.00781' ('-' when there is none)."""
    if not params:
        return "-"
    return ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in params.items())


def format_metric(metric: str, value: float | None) -> str:
    """A metric as every command prints it: errors in percent ('5.23 %'), losses to 4 digits."""
    if value is None or value != value:
        return "-"
    return f"{100 * value:.2f} %" if metric.endswith("error") else f"{value:.4f}"
