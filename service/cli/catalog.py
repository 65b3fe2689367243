"""What hpscape knows by name: models, optimizer variants, axes and presets (read from the registries)."""

from __future__ import annotations

from rich.table import Table

from hpscape.landscapes import AXES, PRESETS, VARIANTS, model_names
from hpscape.landscapes.axes import axis_families
from hpscape.landscapes.variants import DECAY_FORMS
from hpscape.service.cli._common import console


def models() -> None:
    """List every model name the trainer builds (`model:` in a spec, `--model` of `hpscape train`)."""
    for name in model_names():
        console.print(name, highlight=False)


def variants() -> None:
    """List the optimizer variants: family, decay form, the hyperparameters each reads, its landscape partner."""
    table = Table(title="optimizer variants")
    for column in ("variant", "label", "family", "decay", "own hyperparameters", "partner"):
        table.add_column(column, no_wrap=column != "own hyperparameters")
    for variant in VARIANTS.values():
        table.add_row(variant.name, variant.label, variant.family.title, variant.decay,
                      ", ".join(variant.hyperparameters) or "-", variant.partner)
    table.caption = "; ".join(f"{form}: {text}" for form, text in DECAY_FORMS.items())
    console.print(table)


def axes() -> None:
    """List the axes a spec can sweep (grid, facet) or fix (hyperparameters), with scale and valid values."""
    table = Table(title="axes")
    for column in ("axis", "meaning", "scale", "valid", "read by", "when not swept"):
        table.add_column(column)
    for axis in AXES.values():
        readers = axis_families(axis)
        families = ", ".join(readers) if readers else "every variant"
        if axis.spec_field:
            fixed = f"the spec's `{axis.spec_field}`"
        elif axis.default is None and axis.name != "eps":
            fixed = "required in `hyperparameters`"
        elif axis.name == "eps":
            fixed = "the family's default"
        else:
            fixed = f"{axis.default!r} (or `hyperparameters`)"
        valid = ", ".join(axis.choices) if axis.choices else axis.rule
        table.add_row(axis.name, axis.title, axis.scale + (" (0 column)" if axis.zero_column else ""), valid,
                      families, fixed)
    console.print(table)


def presets() -> None:
    """List the built-in presets (`hpscape run --preset NAME`)."""
    table = Table(title="presets")
    for column in ("preset", "dataset", "model", "variants", "axes", "trials", "epochs"):
        table.add_column(column)
    for spec in PRESETS.values():
        facet = f" per {spec.facet.axis}" if spec.facet is not None else ""
        table.add_row(spec.name, spec.dataset, spec.model, ", ".join(spec.variants),
                      " x ".join(spec.swept_axes) + facet, str(spec.total_trials()), str(spec.max_epochs()))
    console.print(table)
