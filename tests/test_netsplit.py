"""The network, for real: a Ray cluster across two network namespaces, and the worker node's link cut mid-trial.

Two "machines" on this one: namespace H holds the Ray head (1 CPU), PostgreSQL and the sweep's driver, namespace W
a Ray worker node (1 CPU); a veth pair joins them (10.213.7.1 <-> 10.213.7.2, addresses that exist only inside the
two namespaces). The sweep's trials run on both nodes; while W trains one, W's end of the link goes down: nothing is
killed, W simply vanishes from the network, with its worker still training and its database connection hanging.
Ray's head notices after its health checks fail (set low here: about 5 s), the trial is retried on the head from
its checkpoint in the shared runs directory, and the sweep ends with every cell finished exactly once.

The test itself stays outside both namespaces and reads the record through PostgreSQL's Unix socket.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from pgserver import OwnPostgres
from processes import kill_session, log_tail
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.service.db import SweepRow, make_engine, make_session_factory, upgrade
from hpscape.service.queue import claim_next
from hpscape.service.sweeps import submit_sweep
from hpscape.workers.sweep.trainable import RAY_NODE_ATTR

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
RAY_NODE_SCRIPT = REPO / "docker" / "ray-node.sh"
HEAD_IP, WORKER_IP, PREFIX = "10.213.7.1", "10.213.7.2", 24
RAY_PORT, PG_PORT = 6379, 5432  # inside namespace H, where nothing else listens
EPOCHS = 20
SPEC: dict[str, Any] = {
    "name": "netsplit", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"],
    "epochs": EPOCHS, "batch_size": 128, "grid": {"lr": [0.01, 0.03, 0.1], "weight_decay": [0.0, 0.001]},
    "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2, "metric": "test_error",
}
# Ray's GCS marks a node dead after this many failed health checks of this period (defaults: 5 of 3 s, and a
# 10 s timeout each): about 5 s here instead of 30 s or more.
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "5"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass
class Namespaces:
    head: str
    worker: str
    head_link: str
    worker_link: str

    def pids(self, namespace: str) -> list[int]:
        listed = _ip("netns", "pids", namespace, check=False).stdout.split()
        return [int(p) for p in listed if p.isdigit()]

    def cut(self) -> None:
        """The worker machine's network is gone: its end of the link down (its processes keep running)."""
        _ip("-n", self.worker, "link", "set", self.worker_link, "down")


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    if shutil.which("ip") is None:
        pytest.fail("this test needs iproute2's `ip` command (apt-get install iproute2) to create network namespaces",
                    pytrace=False)
    tag = f"hps{os.getpid() % 10_000_000}"
    ns = Namespaces(f"{tag}h", f"{tag}w", f"{tag}a", f"{tag}b")
    created: list[str] = []
    try:
        for name in (ns.head, ns.worker):
            result = _ip("netns", "add", name, check=False)
            if result.returncode != 0:
                pytest.fail(f"cannot create a network namespace (`ip netns add {name}`: {result.stderr.strip()}); "
                            "this test needs CAP_NET_ADMIN (root, or a container with --cap-add NET_ADMIN)",
                            pytrace=False)
            created.append(name)
        _ip("link", "add", ns.head_link, "type", "veth", "peer", "name", ns.worker_link)
        _ip("link", "set", ns.head_link, "netns", ns.head)
        _ip("link", "set", ns.worker_link, "netns", ns.worker)
        for name, link, address in ((ns.head, ns.head_link, HEAD_IP), (ns.worker, ns.worker_link, WORKER_IP)):
            _ip("-n", name, "addr", "add", f"{address}/{PREFIX}", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        for name in reversed(created):  # whatever still runs in them (Ray, a hung worker): gone with the machine
            for _ in range(50):
                pids = ns.pids(name)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            _ip("netns", "del", name, check=False)  # takes the veth pair with it


@dataclass
class Node:
    process: subprocess.Popen
    temp_dir: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        kill_session(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _in_namespace(namespace: str, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(["ip", "netns", "exec", namespace, *command], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(REPO))


def _start_node(namespace: str, role: str, args: list[str], env: dict[str, str], logs: Path) -> Node:
    temp_dir = Path(tempfile.mkdtemp(prefix=f"hps-{role}-", dir="/tmp"))  # short: Ray's socket paths
    log = logs / f"ray-{role}.log"
    process = _in_namespace(namespace, ["bash", str(RAY_NODE_SCRIPT), role, *args, f"--temp-dir={temp_dir}",
                                        "--object-store-memory=200000000", "--disable-usage-stats", "--block"],
                            env, log)
    return Node(process, temp_dir, log)


def _nodes(namespace: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The cluster's nodes as Ray's GCS reports them, asked by a short-lived driver inside namespace H."""
    script = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
              "print(json.dumps([{'id': n['NodeID'], 'ip': n['NodeManagerAddress'], 'alive': n['Alive'], "
              "'resources': n['Resources']} for n in ray.nodes()]))") % f"{HEAD_IP}:{RAY_PORT}"
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", script], env=env,
                            capture_output=True, text=True, timeout=90, cwd=str(REPO))
    assert result.returncode == 0, f"cannot list the cluster's nodes:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_a_trial_moves_off_a_node_whose_network_is_cut(namespaces: Namespaces, tmp_path: Path) -> None:
    if not Path(RAY).exists():
        pytest.fail(f"the Ray CLI is missing at {RAY}: install the project (`make install`)", pytrace=False)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSCAPE_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([str(Path(RAY).parent), env.get("PATH", "/usr/bin:/bin")]), **FAST_HEALTH_CHECKS)
    # A partitioned worker may hang inside a transaction that holds its trial's row lock: the server ends such a
    # session after 10 s (and notices dead peers by keepalive), so the retried trial is not blocked behind it.
    try:
        db = OwnPostgres.create(host=HEAD_IP, port=PG_PORT, netns=namespaces.head, options={
            "idle_in_transaction_session_timeout": "10s", "tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3"})
    except AssertionError as exc:
        pytest.fail(f"cannot start PostgreSQL in namespace {namespaces.head}: {exc}", pytrace=False)
    nodes: list[Node] = []
    driver: subprocess.Popen | None = None
    try:
        head = _start_node(namespaces.head, "head", [f"--port={RAY_PORT}", f"--node-ip-address={HEAD_IP}",
                                                     "--include-dashboard=false"],
                           {**env, "HPSCAPE_HEAD_CPUS": "1"}, tmp_path)
        nodes.append(head)
        wait_until("the Ray head to start", lambda: "Ray runtime started" in head.log.read_text(errors="replace")
                   or head.process.poll() is not None, 120, interval=0.5, context=lambda: log_tail(head.log))
        assert head.process.poll() is None, log_tail(head.log)
        worker = _start_node(namespaces.worker, "worker", [f"--node-ip-address={WORKER_IP}", "--num-gpus=0"],
                             {**env, "HPSCAPE_RAY_HEAD": f"{HEAD_IP}:{RAY_PORT}", "HPSCAPE_WORKER_CPUS": "1"}, tmp_path)
        nodes.append(worker)
        listed = wait_until("both nodes to join", lambda: (lambda alive: alive if len(alive) == 2 else None)(
            [n for n in _nodes(namespaces.head, env) if n["alive"]]), 120, interval=1.0,
            context=lambda: log_tail(head.log) + "\n" + log_tail(worker.log))
        by_ip = {n["ip"]: n["id"] for n in listed}
        assert set(by_ip) == {HEAD_IP, WORKER_IP}, by_ip
        head_id, worker_id = by_ip[HEAD_IP], by_ip[WORKER_IP]

        # The sweep, queued as a controller would, and its driver on the head's machine.
        engine = make_engine(db.socket_url, pool_size=2)
        upgrade(engine)
        with make_session_factory(engine)() as session:
            row, _ = submit_sweep(session, SweepSpec.model_validate(SPEC), owner="alice")
        sweep_id, record = row.id, row.record_name
        assert claim_next(engine, host="h", limit=1).sweep_id == sweep_id
        spec = SweepSpec.model_validate(SPEC).replace(name=record)
        driver_log = tmp_path / "driver.log"
        driver = _in_namespace(namespaces.head, [sys.executable, "-m", "hpscape.service.queue.driver", sweep_id,
                                                 "--launch", "1", "--heartbeat-s", "1"],
                               {**env, "HPSCAPE_STORAGE": db.url, "HPSCAPE_RAY_ADDRESS": f"{HEAD_IP}:{RAY_PORT}",
                                "HPSCAPE_RUNS_DIR": str(tmp_path / "runs"), "HPSCAPE_DATA_DIR": str(tmp_path / "data")},
                               driver_log)
        storage = make_storage(db.socket_url)

        def context() -> str:
            return "\n".join([log_tail(driver_log, 80), log_tail(head.log), log_tail(worker.log)])

        def trials() -> list:
            try:
                return open_study(storage, record, "sgd", create=False).get_trials(deepcopy=False)
            except KeyError:
                return []

        def victim():
            assert driver.poll() is None, f"the driver exited with {driver.returncode}\n{context()}"
            on_worker = [t for t in trials() if t.state == TrialState.RUNNING
                         and t.user_attrs.get(RAY_NODE_ATTR) == worker_id
                         and 2 <= (t.user_attrs.get(Attr.EPOCHS_DONE) or 0) <= EPOCHS - 6]
            return on_worker[0] if on_worker else None

        trial = wait_until("a trial training on the worker node", victim, 240, interval=0.2, context=context)
        epochs_at_cut = trial.user_attrs[Attr.EPOCHS_DONE]
        namespaces.cut()
        cut_at = time.monotonic()
        assert worker.process.poll() is None, "the worker node is cut off, not killed"

        def moved_to_head() -> bool:
            assert driver.poll() is None or driver.returncode == 0, f"the driver exited with {driver.returncode}"
            now = next((t for t in trials() if t.number == trial.number), None)
            return now is not None and now.user_attrs.get(RAY_NODE_ATTR) == head_id

        wait_until("the cut-off trial to restart on the head", moved_to_head, 300, interval=0.5, context=context)
        moved_s = time.monotonic() - cut_at
        driver.wait(timeout=420)
        recovered_s = time.monotonic() - cut_at
        assert driver.returncode == 0, f"the driver exited with {driver.returncode}\n{context()}"
        with make_session_factory(engine)() as session:
            final = session.get(SweepRow, sweep_id)
        assert final.status == "succeeded", (final.status, final.error, context())

        recorded = trials()
        cells = Counter(t.user_attrs[Attr.CELL] for t in recorded)
        assert set(cells) == {c.key for c in spec.cells("sgd")} and max(cells.values()) == 1, cells
        assert len(recorded) == 6, "one trial per cell: none lost, none duplicated"
        assert all(t.state == TrialState.COMPLETE for t in recorded), [(t.number, t.state.name) for t in recorded]
        assert all(sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)) for t in recorded)
        moved = next(t for t in recorded if t.number == trial.number)
        assert moved.user_attrs[RAY_NODE_ATTR] == head_id, "the trial finished on the head"
        assert moved.user_attrs[Attr.RESUMED_FROM_EPOCH] >= epochs_at_cut, (moved.user_attrs, epochs_at_cut)
        assert [e["epoch"] for e in moved.user_attrs[Attr.HISTORY]] == list(range(1, EPOCHS + 1))

        alive = wait_until("Ray to mark the cut-off node dead", lambda: (lambda seen: seen if seen == {
            head_id: True, worker_id: False} else None)({n["id"]: n["alive"] for n in _nodes(namespaces.head, env)}),
            60, interval=2.0, context=context)
        assert alive[worker_id] is False
        storage.engine.dispose()
        engine.dispose()
        print(f"\nnetwork split: trial #{trial.number} cut off on the worker at epoch {epochs_at_cut}, resumed on the "
              f"head from epoch {moved.user_attrs[Attr.RESUMED_FROM_EPOCH]} {moved_s:.0f} s after the cut; sweep done "
              f"{recovered_s:.0f} s after the cut, {time.monotonic() - started:.0f} s in all")
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)
        if driver is not None:
            kill_session(driver.pid)
        for node in reversed(nodes):
            node.stop()
        db.close()
