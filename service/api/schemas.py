"""Request and response bodies of the REST API (pydantic), kept apart from the tables in `hpscape.service.db.models`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BestCell",
    "ErrorItem",
    "ErrorOut",
    "HealthCheck",
    "HealthOut",
    "PresetSubmission",
    "SweepDetail",
    "SweepExport",
    "SweepList",
    "SweepOut",
    "SweepProgress",
    "SweepTimings",
    "TrialList",
    "TrialOut",
    "VariantProgress",
]

SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "recorded"]
TrialStateName = Literal["RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"]


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where the problem is, e.g. [\"body\", \"grid\", \"lr\", 3]")
    msg: str = Field(description="what is wrong and how to fix it")
    type: str = "value_error"


class ErrorOut(BaseModel):
    detail: str | list[ErrorItem]


class PresetSubmission(BaseModel):
    """A built-in preset with top-level fields of the sweep spec overridden, e.g. {"preset": "quick", "epochs": 5}."""

    model_config = ConfigDict(extra="allow")

    preset: str = Field(description="quick (CPU, minutes) or fig2 (the paper's Figure 2, GPU cluster)")


class SweepOut(BaseModel):
    """A sweep as listed: its place in the queue and who submitted it."""

    id: str
    name: str = Field(description="the spec's name")
    record_name: str = Field(description="the name of its Optuna studies: '<record_name>/<variant>'")
    status: SweepStatus
    owner: str
    total_trials: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool = Field(description="a cancel was asked for and is being carried out")
    error: str | None = Field(description="why the sweep failed, if it did")


class BestCell(BaseModel):
    number: int
    value: float
    params: dict[str, float | int] = Field(
        description="the swept axes' values, e.g. {\"lr\": 0.125, \"weight_decay\": 0.001}")
    seed: int | None


class VariantProgress(BaseModel):
    study: str
    total: int = Field(description="trials the spec plans for this study")
    n_trials: int
    counts: dict[str, int] = Field(description="trials by Optuna state (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)")
    diverged: int
    best: BestCell | None = Field(description="the best non-diverged trial so far (lowest metric)")


class SweepProgress(BaseModel):
    done: int = Field(description="trials finished (COMPLETE, PRUNED or FAIL)")
    total: int
    counts: dict[str, int] = Field(description="trials by state over all variants")


class SweepTimings(BaseModel):
    queued_s: float | None = Field(description="seconds between submission and start")
    elapsed_s: float | None = Field(description="seconds since the start (until the end, once finished)")
    eta_s: float | None = Field(description="estimated seconds to go, from the pace so far")


class SweepDetail(SweepOut):
    """A sweep with its progress read from the Optuna record."""

    spec: dict[str, Any] = Field(description="the SweepSpec as submitted (JSON)")
    metric: str
    progress: SweepProgress
    variants: dict[str, VariantProgress] = Field(
        description="per study, keyed 'VARIANT' or 'VARIANT/AXIS=VALUE' in a faceted sweep")
    timings: SweepTimings
    host: str | None = Field(description="the machine its driver runs on")
    launches: int = Field(description="how often its driver was started (more than 1 after a recovery)")


class SweepList(BaseModel):
    items: list[SweepOut]
    total: int = Field(description="sweeps matching the filters")
    limit: int
    offset: int


class TrialOut(BaseModel):
    variant: str
    facet: str | None = Field(description="the facet value of its study, e.g. 'schedule=step', in a faceted sweep")
    number: int
    state: TrialStateName
    params: dict[str, float | int] = Field(description="the swept axes' values, by axis name")
    seed: int | None
    value: float | None = Field(description="the objective (the spec's metric) of a finished trial")
    epochs_done: int | None
    epochs_budget: int | None
    diverged: bool
    stopped_early: bool
    test_error: float | None
    test_loss: float | None
    train_error: float | None
    train_loss: float | None
    images_per_s: float | None
    wall_s: float | None
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    hyperparameters: dict[str, float | int | str] | None = Field(
        description="every value the trial trains with (lr, weight_decay, momentum or betas, epochs, ...)")
    history: list[dict[str, Any]] | None = Field(
        description="one entry per finished epoch: epoch, test_error, test_loss, train_loss, train_error, lr_t, "
        "epoch_seconds, ... (null for records written before hpscape 0.2)")


class TrialList(BaseModel):
    items: list[TrialOut]
    total: int
    limit: int
    offset: int


class SweepExport(BaseModel):
    sweep: SweepOut
    spec: dict[str, Any]
    trials: list[TrialOut]


class HealthCheck(BaseModel):
    ok: bool
    detail: str


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    database: HealthCheck
    ray: HealthCheck
