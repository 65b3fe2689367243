"""Configuration, read once at the edges (CLI, server start-up) and passed down as arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOME = Path.home() / ".hpscape"


class Settings(BaseSettings):
    """Every `HPSCAPE_*` environment variable the project reads."""

    model_config = SettingsConfigDict(env_prefix="HPSCAPE_", env_file=None, extra="ignore")

    storage: str = Field(
        default=f"sqlite:///{_HOME / 'hpscape.db'}",
        description="SQLAlchemy URL of the Optuna studies (SQLite file by default, PostgreSQL in production).",
    )
    data_dir: Path = Field(default=_HOME / "data", description="Where datasets (cifar-10-python.tar.gz) live.")
    runs_dir: Path = Field(default=_HOME / "runs", description="Checkpoints and Ray Tune experiment state.")
    ray_address: str | None = Field(default=None, description="Ray cluster to join (e.g. ray://HEAD:10001); local Ray if unset.")
    device: str = Field(default="auto", description="Training device: auto, cpu, cuda, cuda:N.")


def load_settings() -> Settings:
    return Settings()
