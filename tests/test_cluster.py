"""A sweep on a two-node Ray cluster on this machine, submitted to the controller (`hpscape serve`) on PostgreSQL.

The head (1 CPU) and a second node (1 CPU, custom resource `node2`) are started by the containers' own script,
`docker/ray-node.sh head|worker`, each in its own session, with Ray token authentication on, as two machines would.
The sweep's trials run on both nodes; the second node is killed (every
process of it, SIGKILL) while it trains a trial; Ray retries that trial on the head from its checkpoint in the shared
runs directory and the sweep completes with every cell finished exactly once. Before that, the controller refuses
(HTTP 422) sweeps whose trials no node of this cluster can hold, having asked the cluster for its nodes.

Everything listens on loopback: the nodes use 127.0.0.2 and 127.0.0.3, because Ray rewrites 127.0.0.1 and
"localhost" into the machine's outward address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from optuna.trial import TrialState
from processes import kill_session, log_tail, session_members
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.workers.sweep.trainable import RAY_NODE_ATTR

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
RAY_NODE_SCRIPT = REPO / "docker" / "ray-node.sh"
HEAD_IP, NODE2_IP = "127.0.0.2", "127.0.0.3"
EPOCHS = 6
SPEC: dict[str, Any] = {
    "name": "two-nodes", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "sgdw"],
    "epochs": EPOCHS, "batch_size": 128, "grid": {"lr": [0.01, 0.03, 0.1], "weight_decay": [0.0, 0.001]},
    "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2, "metric": "test_error",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayNode:
    """`ray start --block` in a session of its own: stopping the session stops the whole node."""

    name: str
    process: subprocess.Popen
    temp_dir: Path
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        kill_session(self.process.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    head: RayNode
    node2: RayNode
    node_ids: dict[str, str] = field(default_factory=dict)  # "head" / "node2" -> Ray node id (hex)

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes as Ray's GCS reports them, asked by a short-lived driver."""
        script = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
                  "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'], 'alive': n['Alive'], "
                  "'resources': n['Resources']} for n in ray.nodes()]))") % self.address
        result = subprocess.run([sys.executable, "-c", script], env=self.env, capture_output=True, text=True,
                                timeout=90, cwd=str(REPO))
        assert result.returncode == 0, f"cannot list the cluster's nodes:\n{result.stderr[-3000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])


# Ray's GCS marks a node dead after this many failed health checks of this period (defaults: 5 of 3 s, and a
# 10 s timeout each): about 5 s here, so the test waits for the loss less.
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "5"}


def _ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSCAPE_"))}
    # Token authentication as a real cluster should run it: every node and every driver holds the secret.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(REPO), PATH=os.pathsep.join([str(Path(RAY).parent), env.get("PATH", "/usr/bin:/bin")]),
               **FAST_HEALTH_CHECKS)
    return env


def _node_ports() -> list[str]:
    # Every port explicit: other Ray instances on this machine (other tests) must not collide with these nodes.
    return [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
            "--object-store-memory=200000000", "--disable-usage-stats", "--block"]


def _start_node(name: str, role: str, args: list[str], env: dict[str, str], logs: Path) -> RayNode:
    """`docker/ray-node.sh ROLE` with extra `ray start` flags (a later flag overrides the script's own)."""
    temp_dir = Path(tempfile.mkdtemp(prefix=f"hpscape-{name}-", dir="/tmp"))  # short: Ray's socket paths
    log = logs / f"ray-{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", str(RAY_NODE_SCRIPT), role, *args, f"--temp-dir={temp_dir}",
                                    *_node_ports()], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=str(REPO))
    return RayNode(name, process, temp_dir, log)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if not Path(RAY).exists():
        pytest.fail(f"the Ray CLI is missing at {RAY}: install the project (`make install`)")
    env = _ray_env()
    port = _free_port()
    address = f"{HEAD_IP}:{port}"
    nodes: list[RayNode] = []
    try:
        head = _start_node("head", "head", [f"--port={port}", f"--node-ip-address={HEAD_IP}",
                                            "--include-dashboard=false"], {**env, "HPSCAPE_HEAD_CPUS": "1"}, tmp_path)
        nodes.append(head)
        wait_until("the Ray head to start", lambda: "Ray runtime started" in head.log.read_text(errors="replace")
                   or head.process.poll() is not None, 90, interval=0.2, context=lambda: log_tail(head.log))
        assert head.process.poll() is None, log_tail(head.log)
        node2 = _start_node("node2", "worker", [f"--node-ip-address={NODE2_IP}", "--num-gpus=0",
                                                 '--resources={"node2": 1}'],
                            {**env, "HPSCAPE_RAY_HEAD": address, "HPSCAPE_WORKER_CPUS": "1"}, tmp_path)
        nodes.append(node2)
        cluster = Cluster(address, env, head, node2)
        listed = wait_until("both nodes to join", lambda: [n for n in cluster.nodes() if n["alive"]]
                            if len([n for n in cluster.nodes() if n["alive"]]) == 2 else None, 90, interval=1.0,
                            context=lambda: log_tail(head.log) + "\n" + log_tail(node2.log))
        by_ip = {n["ip"]: n for n in listed}
        assert set(by_ip) == {HEAD_IP, NODE2_IP}, f"nodes should listen on loopback only: {by_ip}"
        assert by_ip[NODE2_IP]["resources"].get("node2") == 1.0
        cluster.node_ids = {"head": by_ip[HEAD_IP]["id"], "node2": by_ip[NODE2_IP]["id"]}
        yield cluster
    finally:
        for node in reversed(nodes):  # always: a leftover node would hold ports and CPUs for the rest of the suite
            node.stop()


@dataclass
class Controller:
    url: str
    token: str
    process: subprocess.Popen
    log: Path
    runs_dir: Path
    started: list[str] = field(default_factory=list)  # sweep ids, for the clean-up

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def logs(self, sweep_id: str | None = None) -> str:
        text = log_tail(self.log)
        if sweep_id:
            text += "\n" + log_tail(self.runs_dir / "drivers" / f"{sweep_id}.log", 80)
        return text


def _driver_pids(sweep_id: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "hpscape.service.queue.driver" in cmdline and sweep_id in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.fixture
def controller(postgres_url: str, cluster: Cluster, tmp_path: Path) -> Iterator[Controller]:
    port = _free_port()
    token = secrets.token_urlsafe(24)
    runs_dir = tmp_path / "runs"
    env = {**cluster.env, "HPSCAPE_STORAGE": postgres_url, "HPSCAPE_RAY_ADDRESS": cluster.address,
           "HPSCAPE_RUNS_DIR": str(runs_dir), "HPSCAPE_DATA_DIR": str(tmp_path / "data"),
           "HPSCAPE_ADMIN_TOKEN": token, "HPSCAPE_DISPATCH_INTERVAL_S": "0.5", "HPSCAPE_STATUS_CACHE_S": "0"}
    log = tmp_path / "controller.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hpscape.service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(REPO),
        )
    ctl = Controller(f"http://127.0.0.1:{port}", token, process, log, runs_dir)
    try:
        def healthy() -> dict | None:
            if process.poll() is not None:
                raise AssertionError(f"the controller exited with {process.returncode}\n{ctl.logs()}")
            try:
                response = httpx.get(f"{ctl.url}/healthz", timeout=5)
            except httpx.HTTPError:
                return None
            return response.json() if response.status_code == 200 else None

        health = wait_until("the controller's /healthz", healthy, 90, interval=0.5, context=ctl.logs)
        assert health["database"]["ok"] and health["ray"]["ok"], health
        yield ctl
    finally:
        with ctl.client() as client:
            for sweep_id in ctl.started:  # a sweep still running after a failure: cancel it, then make sure
                try:
                    client.post(f"/api/v1/sweeps/{sweep_id}/cancel")
                except httpx.HTTPError:
                    pass
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_session(process.pid)
            process.wait(timeout=10)
        for sweep_id in ctl.started:
            for pid in _driver_pids(sweep_id):
                kill_session(os.getsid(pid))


def _trials(storage_url: str, record_name: str, variant: str) -> list:
    storage = make_storage(storage_url)
    try:
        return open_study(storage, record_name, variant, create=False).get_trials(deepcopy=False)
    except KeyError:
        return []  # the driver has not created the study yet


@pytest.mark.timeout(360)
def test_sweep_survives_losing_a_node(postgres_url: str, cluster: Cluster, controller: Controller) -> None:
    started = time.monotonic()
    with controller.client() as client:
        # Trials no node of this cluster can hold are refused at submit, naming the field: no node has a GPU, and
        # each has one CPU (the controller asks the cluster for its nodes).
        for resources, field, says in (({"cpu": 1, "gpu": 1}, "gpu", "it has no GPU"),
                                       ({"cpu": 2, "gpu": 0}, "cpu", "the most any node has is 1")):
            refused = client.post("/api/v1/sweeps", json={**SPEC, "resources": resources})
            assert refused.status_code == 422, refused.text
            (problem,) = refused.json()["detail"]
            assert problem["loc"] == ["body", "resources", field] and says in problem["msg"], problem
            assert f"the Ray cluster at {cluster.address}" in problem["msg"], problem

        response = client.post("/api/v1/sweeps", json=SPEC)
        assert response.status_code == 202, response.text
        sweep = response.json()
        controller.started.append(sweep["id"])
        record, sweep_id = sweep["record_name"], sweep["id"]
        spec = SweepSpec.model_validate(SPEC).replace(name=record)
        node2_id, head_id = cluster.node_ids["node2"], cluster.node_ids["head"]

        # Wait until the second node has finished a trial and is training another (past its first checkpoint).
        def victim() -> tuple[str, Any] | None:
            trials = [(v, t) for v in spec.variants for t in _trials(postgres_url, record, v)]
            on_node2 = [(v, t) for v, t in trials if t.user_attrs.get(RAY_NODE_ATTR) == node2_id]
            if not any(t.state == TrialState.COMPLETE for _, t in on_node2):
                return None
            running = [(v, t) for v, t in on_node2 if t.state == TrialState.RUNNING
                       and 1 <= (t.user_attrs.get(Attr.EPOCHS_DONE) or 0) <= EPOCHS - 2]
            return running[0] if running else None

        variant, trial = wait_until("a trial training on the second node", victim, 180, interval=0.1,
                                    context=lambda: controller.logs(sweep_id))
        pid = int(trial.user_attrs[Attr.WORKER].rsplit(":", 1)[1])
        assert pid in session_members(cluster.node2.process.pid), "the worker training it belongs to node2"
        epochs_at_kill = trial.user_attrs[Attr.EPOCHS_DONE]
        cluster.node2.kill()  # the machine is gone: raylet, agents and its workers at once
        killed_at = time.monotonic()

        def finished() -> dict | None:
            body = client.get(f"/api/v1/sweeps/{sweep_id}").json()
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        detail = wait_until("the sweep to finish after the node loss", finished, 240, interval=1.0,
                            context=lambda: controller.logs(sweep_id))
        recovered_s = time.monotonic() - killed_at
        assert detail["status"] == "succeeded", f"{detail}\n{controller.logs(sweep_id)}"
        assert detail["progress"]["done"] == detail["total_trials"] == 12

        listed = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 100}).json()
        assert listed["total"] == 12 and {t["state"] for t in listed["items"]} == {"COMPLETE"}

    # Nothing lost, nothing duplicated, nothing left running: one COMPLETE trial per cell and variant.
    ran_on = Counter()
    for v in spec.variants:
        trials = _trials(postgres_url, record, v)
        cells = Counter(t.user_attrs[Attr.CELL] for t in trials)
        assert set(cells) == {cell.key for cell in spec.cells(v)}, f"{v}: cells missing"
        assert max(cells.values()) == 1 and len(trials) == len(cells), f"{v}: a cell has several trials: {cells}"
        assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state.name) for t in trials]
        assert all(sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)) for t in trials), "an epoch is missing"
        ran_on.update(t.user_attrs.get(RAY_NODE_ATTR) for t in trials)
    assert ran_on[node2_id] >= 1 and ran_on[head_id] >= 1, f"trials should have finished on both nodes: {ran_on}"
    assert set(ran_on) == {head_id, node2_id}

    # The trial the node was training moved to the head and continued from its checkpoint, not from scratch.
    retried = next(t for t in _trials(postgres_url, record, variant) if t.number == trial.number)
    assert retried.user_attrs[RAY_NODE_ATTR] == head_id
    assert retried.user_attrs[Attr.RESUMED_FROM_EPOCH] >= epochs_at_kill >= 1, retried.user_attrs
    assert int(retried.user_attrs[Attr.WORKER].rsplit(":", 1)[1]) != pid

    # Ray may still list the killed node as alive for a while after its trials moved (its health checks have to
    # fail first): wait for the verdict, bounded.
    def marked_dead() -> dict | None:
        alive = {n["id"]: n["alive"] for n in cluster.nodes()}
        return alive if alive == {head_id: True, node2_id: False} else None

    wait_until("Ray to mark the killed node dead", marked_dead, 90, interval=2.0,
               context=lambda: f"nodes: {cluster.nodes()}")
    print(f"\ntwo-node sweep: 12 trials, node2 killed at epoch {epochs_at_kill} of trial {variant}#{trial.number}, "
          f"finished {recovered_s:.0f} s later; {time.monotonic() - started:.0f} s in all; trials per node: "
          f"head {ran_on[head_id]}, node2 {ran_on[node2_id]}")
