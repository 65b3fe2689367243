"""Sweep spec files: YAML or JSON in, a validated `SweepSpec` out, and back.

Duplicate keys are refused (YAML and JSON would silently keep the last one); syntax errors say line:column;
an invalid spec raises `SpecError` with one ``field.path: message`` line per problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError, format_validation_error
from .spec import SweepSpec

__all__ = ["dump_spec", "load_spec", "parse_spec_file"]

# ---------------------------------------------------------------------------------------------
# Files


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (YAML would silently keep the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_spec_file(path: Path) -> Any:
    """The raw mapping in a .yaml/.yml/.json file (SpecError for unreadable files and syntax errors)."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SpecError(
            f"{path}: unsupported spec file type {path.suffix or '(none)'!r}; "
            "use .yaml, .yml or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc}") from exc
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            ) from exc
        except ValueError as exc:
            raise SpecError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}{where}: invalid YAML: {problem}") from exc


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec from a .yaml/.yml or .json file.

    Raises SpecError for unreadable files, syntax errors (with line:column) and invalid specs
    (`problems` holds one ``field.path: message`` line per problem).
    """
    path = Path(path)
    data = parse_spec_file(path)
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of spec fields at the top level, got "
            f"{type(data).__name__}"
        )
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc).splitlines()
        message = f"{path}: invalid sweep spec:\n" + "\n".join(f"  {p}" for p in problems)
        raise SpecError(message, problems) from exc


def dump_spec(spec: SweepSpec, path: str | Path) -> Path:
    """Write a spec as YAML or JSON (by suffix) so that `load_spec` reads it back unchanged."""
    path = Path(path)
    data = spec.model_dump(mode="json", exclude_none=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    elif suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    else:
        raise SpecError(f"{path}: unsupported spec file type; use .yaml, .yml or .json")
    return path
