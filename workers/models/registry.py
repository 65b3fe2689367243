"""A small timm-style model registry: names map to builders ``(num_classes, in_channels) -> nn.Module``."""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar, overload

import torch.nn as nn

ModelBuilder = Callable[[int, int], nn.Module]
_B = TypeVar("_B", bound=ModelBuilder)

_MODEL_REGISTRY: dict[str, ModelBuilder] = {}
# Human-readable descriptions of the valid names, shown when a lookup fails.
_NAME_PATTERNS: list[str] = []


@overload
def register_model(name_or_fn: _B) -> _B: ...
@overload
def register_model(name_or_fn: str) -> Callable[[_B], _B]: ...


def register_model(name_or_fn):  # type: ignore[no-untyped-def]
    """Register a model builder.

    Use as ``@register_model`` (the function's ``__name__`` is the model name) or as
    ``register_model("name")(builder)`` when names are generated in a loop. The builder is
    called as ``builder(num_classes, in_channels)`` and must return an ``nn.Module``.
    """
    if isinstance(name_or_fn, str):
        name = name_or_fn

        def _decorator(fn: _B) -> _B:
            _add(name, fn)
            return fn

        return _decorator
    if callable(name_or_fn):
        _add(name_or_fn.__name__, name_or_fn)
        return name_or_fn
    raise TypeError(
        f"register_model expects a model name (str) or a builder function, got {type(name_or_fn).__name__}"
    )


def _add(name: str, fn: ModelBuilder) -> None:
    if not name:
        raise ValueError("model name must be a non-empty string")
    if name in _MODEL_REGISTRY:
        raise ValueError(f"model {name!r} is already registered; pick a different name")
    _MODEL_REGISTRY[name] = fn


def _register_name_pattern(pattern: str) -> None:
    """Record a description of a family of names (used only in error messages)."""
    if pattern not in _NAME_PATTERNS:
        _NAME_PATTERNS.append(pattern)


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_MODEL_REGISTRY)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` outputs and ``in_channels`` input channels."""
    if name not in _MODEL_REGISTRY:
        raise ValueError(_unknown_name_message(name))
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        # bool is an int subclass; True as a class count is almost certainly a bug.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return _MODEL_REGISTRY[name](num_classes, in_channels)


def _unknown_name_message(name: object) -> str:
    names = list_models()
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.6)
    parts = [f"unknown model name {name!r}."]
    if close:
        parts.append(f"Did you mean: {', '.join(close)}?")
    if _NAME_PATTERNS:
        parts.append("Valid names: " + "; ".join(_NAME_PATTERNS) + ".")
    parts.append("Call workers.models.list_models() for the full list.")
    return " ".join(parts)
