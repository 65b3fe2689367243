"""Configuration, read once at the edges (CLI, server start-up) and passed down as arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings"]

_HOME = Path.home() / ".hpscape"


class SettingsError(ValueError):
    """Settings that cannot work together; the message names the variables and what to set."""


class Settings(BaseSettings):
    """Every `HPSCAPE_*` environment variable the project reads."""

    model_config = SettingsConfigDict(env_prefix="HPSCAPE_", env_file=None, extra="ignore")

    storage: str = Field(
        default=f"sqlite:///{_HOME / 'hpscape.db'}",
        description="SQLAlchemy URL of the Optuna studies and the service's own tables (SQLite file by default, "
        "PostgreSQL in production).",
    )
    data_dir: Path = Field(default=_HOME / "data", description="Where datasets (cifar-10-python.tar.gz) live.")
    runs_dir: Path = Field(default=_HOME / "runs", description="Checkpoints and Ray Tune state.")
    ray_address: str | None = Field(default=None,
                                    description="Ray cluster to join (e.g. ray://HEAD:10001); local Ray if unset.")
    device: str = Field(default="auto", description="Training device: auto, cpu, cuda, cuda:N.")

    # --- the controller (server side) ---------------------------------------------------------------------------
    public_read: bool = Field(default=False, description="Let anyone read sweeps and dashboards without a token.")
    admin_token: str | None = Field(
        default=None, description="Seeds (or rotates) the admin token named 'admin' at start-up, for first use."
    )
    max_running_sweeps: int = Field(
        default=1, ge=1, description="Sweeps running at once over all controllers sharing the database; the rest wait."
    )
    dispatch_interval_s: float = Field(default=1.0, gt=0, description="How often the dispatcher looks for work.")
    cancel_grace_s: float = Field(
        default=10.0, ge=0, description="Seconds between SIGTERM and SIGKILL when a running sweep is cancelled."
    )
    max_launches: int = Field(
        default=3, ge=1, description="Times a sweep's driver is (re)started before the sweep is marked failed."
    )
    status_cache_s: float = Field(
        default=1.0, ge=0, description="How long a sweep's status, and a page of its trials without histories, read "
        "from Optuna is reused for the requests asking for it (0: every request reads)."
    )
    stale_after_s: float = Field(
        default=300.0, gt=0,
        description="A running sweep on another host whose driver sent no heartbeat for this long is taken over "
        "(more than the drivers' heartbeat interval, checked at start-up).",
    )
    db_pool_size: int = Field(
        default=20, ge=1, le=500,
        description="Requests that use the database at once (one pooled connection each); more wait their turn "
        "without holding a thread or a connection.",
    )
    auth_cache_s: float = Field(
        default=5.0, ge=0, le=300,
        description="How long a verified token is trusted without a database read; revoking it in this process "
        "takes effect at once, `hpscape token revoke` elsewhere within this many seconds. 0: every request reads.",
    )

    chromium: Path = Field(
        default=Path("/usr/bin/chromium"),
        description="The Chromium the server draws PNG/SVG/PDF exports with (`make chromium` installs it there).",
    )

    # --- sweep drivers and Ray workers: read from the environment where they run --------------------------------
    # Listed here so that every HPSCAPE_* variable has one description (and a row in docs/configuration.md); their
    # readers (hpscape.workers.sweep.retry, hpscape.service.queue.driver) take them from os.environ themselves.
    db_retry_s: float = Field(
        default=600.0, ge=0,
        description="How long a driver or worker keeps retrying a database that is not reachable before it fails.",
    )
    pending_timeout_s: float | None = Field(
        default=None, gt=0,
        description="A controller-launched sweep whose trials wait for resources with none running for this long "
        "fails; unset: the engine's 600 s.",
    )

    # --- the REST client (hpscape submit/list/status/...) -------------------------------------------------------
    url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the hpscape server.")
    token: str | None = Field(default=None, description="Bearer token the CLI sends to the server.")

    def check_controller(self) -> None:
        """Refuse, at the controller's start-up, settings that would break the sweep queue."""
        from hpscape.service.queue.driver import HEARTBEAT_S

        if self.stale_after_s <= HEARTBEAT_S:
            raise SettingsError(
                f"HPSCAPE_STALE_AFTER_S={self.stale_after_s:g} is not more than the drivers' heartbeat interval "
                f"({HEARTBEAT_S:g} s): every running sweep would look abandoned between two heartbeats and be "
                f"taken over; set it well above {HEARTBEAT_S:g} (default 300)"
            )


def load_settings() -> Settings:
    return Settings()
