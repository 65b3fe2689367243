"""hpscape: hyperparameter landscapes (notebook API in progress)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpscape")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
