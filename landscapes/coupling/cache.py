"""Coupling metrics remembered by the content of their landscape.

A page polling a finished sweep asks for the same landscapes' metrics every few seconds; their bootstrap is the
bulk of a landscape request's time. The key is a digest of everything the metrics read (cell means, spreads,
counts, divergence, per-seed samples and both axes) and the metrics' own arguments, so a landscape that gains a
trial gets a new key and never an old answer.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..landscape.types import Landscape, LandscapeAxis

__all__ = ["landscape_digest"]


def _feed_array(digest: hashlib._Hash, array: np.ndarray | None) -> None:
    if array is None:
        digest.update(b"none")
        return
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def _feed_axis(digest: hashlib._Hash, axis: LandscapeAxis) -> None:
    digest.update(f"{axis.name}|{axis.scale}".encode())
    _feed_array(digest, axis.values)


def landscape_digest(landscape: Landscape) -> bytes:
    """A digest of the landscape's numbers and axes (not its labels or trial lists)."""
    digest = hashlib.blake2b(digest_size=20)
    for axis in (landscape.y, landscape.x):
        _feed_axis(digest, axis)
    for array in (landscape.mean, landscape.std, landscape.n, landscape.n_diverged, landscape.samples):
        _feed_array(digest, array)
    return digest.digest()
