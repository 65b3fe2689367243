"""Spec errors: one line per problem, ``field.path: message``, for CLIs (exit 2) and HTTP 422 bodies."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["SpecError", "format_validation_error", "problem", "problem_at", "reroot"]


class SpecError(ValueError):
    """A sweep spec could not be read or is invalid; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def problem(message: str) -> PydanticCustomError:
    """A validation error with `message` as it is (braces in reprs are never taken as placeholders)."""
    return PydanticCustomError("spec", "{detail}", {"detail": message})


def problem_at(title: str, loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A ValidationError at an explicit location (for checks that span several fields)."""
    return ValidationError.from_exception_data(title, [{"type": problem(message), "loc": loc, "input": value}])


def reroot(exc: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    """The same errors, located under `prefix` (so a nested list's error reads grid.lr.sgd[3])."""
    errors = [
        {"type": problem(_clean_message(err)), "loc": (*prefix, *err["loc"]), "input": err.get("input")}
        for err in exc.errors()
    ]
    return ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]


def _format_loc(loc: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model that the field at `loc` lives in (to list allowed names for a typo)."""
    from .spec import SweepSpec

    model: type[BaseModel] = SweepSpec
    for part in loc[:-1]:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        inner = _find_model(model.model_fields[part].annotation)
        if inner is None:
            return None
        model = inner
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _clean_message(err: Any) -> str:
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    kind = err.get("type")
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"]))
        allowed = f"; allowed: {', '.join(model.model_fields)}" if model else ""
        return f"unknown field{allowed}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("literal_error", "enum"):
        return f"{message}, got {err.get('input')!r}"
    return message


def format_validation_error(exc: ValidationError | SpecError) -> str:
    """One line per problem, ``field.path: message``, for CLIs and HTTP 4xx bodies."""
    if isinstance(exc, SpecError):
        return "\n".join(exc.problems)
    lines = []
    for err in exc.errors():
        path = _format_loc(err["loc"])
        message = _clean_message(err)
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)
