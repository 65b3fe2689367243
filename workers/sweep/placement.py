"""Can a sweep's trials be placed at all? The nodes of a Ray cluster (or of this machine) against `resources`.

Ray places each trial (its CPUs and its GPU share together) on one node, so a trial fits if one node holds both;
a trial that fits no node waits forever. Three sources of the nodes:

- `this_machine()`: the CPUs and GPUs a local Ray started here would see (the CPU count or the cgroup quota;
  CUDA_VISIBLE_DEVICES or the NVIDIA driver's GPU list), without starting Ray;
- `nodes_of(ray.nodes())`: the alive nodes of a connected Ray;
- `probe_cluster(address)`: the same from a short-lived driver process, for a controller that is not a Ray driver.

Light on purpose (no Ray, no torch): the controller imports it to check submissions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClusterNodes", "Node", "cluster_nodes", "nodes_of", "probe_cluster", "this_machine", "unplaceable"]

log = logging.getLogger("hpscape.placement")

_PROBE_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class Node:
    cpu: float
    gpu: float


@dataclass(frozen=True)
class ClusterNodes:
    nodes: tuple[Node, ...]
    where: str  # for messages: "this machine", "the Ray cluster at HEAD:6379"

    def largest(self, field: str) -> float:
        return max((getattr(n, field) for n in self.nodes), default=0.0)


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup (v2 cpu.max or v1 cfs), or None if unlimited or unknown."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            text = Path(quota_file).read_text().split()
            if period_file is None:
                quota, period = text[0], text[1]
            else:
                quota, period = text[0], Path(period_file).read_text().split()[0]
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _local_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part for part in visible.split(",") if part.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    try:
        return sum(1 for _ in Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return 0


def this_machine() -> ClusterNodes:
    """What `ray.init()` on this machine would offer trials: its usable CPUs and its GPUs."""
    cpus = float(os.cpu_count() or 1)  # as Ray counts them: the machine's, or its container's quota, truncated
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, max(1.0, float(math.floor(quota))))
    return ClusterNodes((Node(cpus, float(_local_gpus())),), "this machine (a local Ray)")


def nodes_of(ray_nodes: list[dict[str, Any]], where: str) -> ClusterNodes:
    """The alive nodes of `ray.nodes()`, with their total CPUs and GPUs."""
    alive = [n for n in ray_nodes if n.get("Alive", n.get("alive"))]
    return ClusterNodes(tuple(Node(float(n.get("Resources", {}).get("CPU", 0.0)),
                                   float(n.get("Resources", {}).get("GPU", 0.0))) for n in alive), where)


def unplaceable(cpu: float, gpu: float, cluster: ClusterNodes) -> list[tuple[str, str]]:
    """(field, message) for each of `resources.cpu` / `resources.gpu` that keeps a trial off every node; [] if it
    fits one."""
    if any(n.cpu >= cpu and n.gpu >= gpu for n in cluster.nodes):
        return []
    if not cluster.nodes:
        return [("cpu", f"{cluster.where} has no alive node to run a trial on")]
    problems = []
    if gpu > cluster.largest("gpu"):
        most = cluster.largest("gpu")
        problems.append(("gpu", f"each trial asks for {gpu:g} GPU(s), but no node of {cluster.where} has that many "
                                f"({'it has no GPU' if most == 0 else f'the most any node has is {most:g}'}); "
                                "lower resources.gpu (0 trains on CPUs) or add a GPU node"))
    if cpu > cluster.largest("cpu"):
        problems.append(("cpu", f"each trial asks for {cpu:g} CPU(s), but no node of {cluster.where} has that many "
                                f"(the most any node has is {cluster.largest('cpu'):g}); lower resources.cpu"))
    if not problems:  # each fits some node, never both the same one
        problems.append(("gpu" if gpu > 0 else "cpu",
                         f"no node of {cluster.where} has both {cpu:g} CPU(s) and {gpu:g} GPU(s) for one trial "
                         f"(nodes: {', '.join(f'{n.cpu:g} CPU/{n.gpu:g} GPU' for n in cluster.nodes)})"))
    return problems


_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print("HPSCAPE-NODES " + json.dumps([{"Alive": n["Alive"], "Resources": n["Resources"]} for n in ray.nodes()]))
"""


def probe_cluster(address: str, *, timeout_s: float = _PROBE_TIMEOUT_S) -> ClusterNodes:
    """The alive nodes of the Ray cluster at `address`, asked by a short-lived driver process (which needs the
    cluster's token in this environment, as the sweep drivers do). Raises RuntimeError if it cannot tell."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                                timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"asking the Ray cluster at {address} for its nodes took over {timeout_s:.0f} s") from None
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("HPSCAPE-NODES "):
            return nodes_of(json.loads(line.removeprefix("HPSCAPE-NODES ")), f"the Ray cluster at {address}")
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"cannot list the nodes of the Ray cluster at {address} (exit {result.returncode}): "
                       + " / ".join(tail))


class _ProbeCache:
    """Probes at most once per `fresh_s` per address; an answer that would refuse a sweep is at most `refuse_s`
    old (a node may have joined since), one that accepts may be older."""

    def __init__(self, *, accept_s: float = 300.0, refuse_s: float = 10.0, failed_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ClusterNodes | None]] = {}
        self.accept_s, self.refuse_s, self.failed_s = accept_s, refuse_s, failed_s

    def get(self, address: str, fits) -> ClusterNodes | None:  # noqa: ANN001 - fits: ClusterNodes -> bool
        with self._lock:
            now = time.monotonic()
            hit = self._entries.get(address)
            if hit is not None:
                age, nodes = now - hit[0], hit[1]
                if nodes is None and age < self.failed_s:
                    return None
                if nodes is not None and ((fits(nodes) and age < self.accept_s) or age < self.refuse_s):
                    return nodes
            try:
                nodes = probe_cluster(address)
            except (RuntimeError, OSError, ValueError) as exc:
                log.warning("cannot check sweeps' resources against the Ray cluster: %s", exc)
                nodes = None
            self._entries[address] = (time.monotonic(), nodes)
            return nodes


_CACHE = _ProbeCache()


def cluster_nodes(ray_address: str | None, *, fits=lambda nodes: True) -> ClusterNodes | None:  # noqa: ANN001
    """The nodes a sweep's trials could run on: this machine for a local Ray (`ray_address` None or empty), the
    cluster's for another address (probed, cached; `fits` tells the cache whether an answer accepts); None when
    the cluster cannot be asked (then nothing is refused)."""
    if not ray_address:
        return this_machine()
    return _CACHE.get(ray_address, fits)
