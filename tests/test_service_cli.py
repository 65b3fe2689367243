"""The CLI over REST against a live server on loopback (uvicorn in a thread, dispatch off), and the local commands."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from sqlalchemy import update
from typer.testing import CliRunner

from hpscape.service.cli import app as cli
from hpscape.service.db.migrate import head_revision
from hpscape.service.db.models import SweepRow, utcnow

SPEC_YAML = """\
name: cli-spec
dataset: synthetic
model: shake_shake_8_2x16d
variants: [sgd]
epochs: 1
batch_size: 32
grid: {lr: [0.1, 0.01], weight_decay: [0.0, 0.001]}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    def __init__(self, harness, url: str) -> None:
        self.harness, self.url = harness, url

    def run(self, *args: str, who: str | None = "alice", **env: str):
        """Invoke `hpscape ARGS` against this server as token `who`."""
        values = {"HPSCAPE_URL": self.url, "HPSCAPE_TOKEN": self.harness.tokens.get(who, "") if who else "", **env}
        return CliRunner().invoke(cli, list(args), env=values, catch_exceptions=False)


@pytest.fixture
def live(make_api, tmp_path):
    harness = make_api(f"sqlite:///{tmp_path / 'cli.db'}")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(harness.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield LiveServer(harness, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(10)


def sweep_id_from(output: str) -> str:
    return output.split("queued sweep ", 1)[1].split()[0]


def test_submit_list_status_export_cancel(live, tmp_path):
    submitted = live.run("submit", "--preset", "quick", "--set", "epochs=2", "--name", "from-cli")
    assert submitted.exit_code == 0, submitted.output
    sweep_id = sweep_id_from(submitted.output)

    listed = live.run("list", "--json")
    assert listed.exit_code == 0 and [s["id"] for s in json.loads(listed.stdout)["items"]] == [sweep_id]
    table = live.run("list", "--status", "queued")
    assert sweep_id in table.stdout and "from-cli" in table.stdout

    status = live.run("status", sweep_id, "--json")
    detail = json.loads(status.stdout)
    assert detail["spec"]["epochs"] == 2 and detail["name"] == "from-cli" and detail["status"] == "queued"
    assert "queued" in live.run("status", sweep_id).stdout

    exported = live.run("export", sweep_id, "--format", "csv")
    assert (exported.exit_code == 0
            and exported.stdout.startswith("sweep_id,variant,facet,number,state,lr,weight_decay,seed"))
    out = tmp_path / "sweep.json"
    assert live.run("export", sweep_id, "--format", "json", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["sweep"]["id"] == sweep_id

    cancelled = live.run("cancel", sweep_id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    watched = live.run("status", sweep_id, "--watch")
    assert watched.exit_code == 1, "--watch exits non-zero unless the sweep succeeded"


def test_submit_a_spec_file_and_catch_a_bad_one_locally(live, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML)
    ok = live.run("submit", str(spec), "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["total_trials"] == 4 and json.loads(ok.stdout)["name"] == "cli-spec"
    spec.write_text(SPEC_YAML.replace("[0.1, 0.01]", "[.nan, 0.01]"))
    bad = live.run("submit", str(spec))
    assert bad.exit_code == 2 and "grid.lr[0]" in bad.stderr and "finite" in bad.stderr
    assert json.loads(live.run("list", "--json").stdout)["total"] == 1, "the bad spec was never sent"


def test_server_rejections_exit_2_with_the_servers_message(live):
    bad = live.run("submit", "--preset", "quick", "--set", "epochs=0")
    assert bad.exit_code == 2 and "HTTP 422" in bad.stderr and "epochs:" in bad.stderr
    anonymous = live.run("list", who=None)
    assert anonymous.exit_code == 2 and "HTTP 401" in anonymous.stderr and "HPSCAPE_TOKEN" in anonymous.stderr
    missing = live.run("status", "0123456789")
    assert missing.exit_code == 2 and "no sweep" in missing.stderr
    sweep_id = sweep_id_from(live.run("submit", "--preset", "quick").output)
    forbidden = live.run("cancel", sweep_id, who="bob")
    assert forbidden.exit_code == 2 and "HTTP 403" in forbidden.stderr and "owner" in forbidden.stderr
    usage = live.run("submit")
    assert usage.exit_code == 2 and "--preset" in usage.stderr


def test_an_unreachable_server_exits_1_saying_how_to_start_one():
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["list", "--url", url, "--token", "t"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "cannot reach the hpscape server" in result.stderr and "hpscape serve" in result.stderr


def test_status_watch_follows_the_sweep_to_its_end(live):
    sweep = live.run("submit", "--preset", "quick", "--set", "variants=[sgdw]", "--json")
    sweep_id = json.loads(sweep.stdout)["id"]
    state = live.harness.state

    def progress_then_success() -> None:
        time.sleep(0.5)
        with state.sessions() as session:
            session.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(status="running",
                                                                                     started_at=utcnow()))
            session.commit()
        time.sleep(0.5)
        with state.sessions() as session:
            session.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(status="succeeded",
                                                                                     finished_at=utcnow()))
            session.commit()

    worker = threading.Thread(target=progress_then_success)
    worker.start()
    watched = live.run("status", sweep_id, "--watch", "--interval", "0.2")
    worker.join()
    assert watched.exit_code == 0, watched.output
    assert "succeeded" in watched.stdout and "sgdw" in watched.stdout


def test_db_and_token_commands_work_on_a_fresh_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
    runner = CliRunner()
    head = head_revision()  # the newest of service/db/migrations/versions, as Alembic reads them
    upgraded = runner.invoke(cli, ["db", "upgrade", "--storage", url])
    assert upgraded.exit_code == 0 and f"revision {head}" in upgraded.stdout, upgraded.output
    assert head in runner.invoke(cli, ["db", "current", "--storage", url]).stdout
    created = runner.invoke(cli, ["token", "create", "ci-bot", "--admin", "--storage", url])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert len(secret) >= 43 and "not shown again" in created.stderr
    again = runner.invoke(cli, ["token", "create", "ci-bot", "--storage", url])
    assert again.exit_code == 2 and "already exists" in again.stderr
    listed = runner.invoke(cli, ["token", "list", "--storage", url])
    assert "ci-bot" in listed.stdout and secret not in listed.stdout
    assert runner.invoke(cli, ["token", "revoke", "ci-bot", "--storage", url]).exit_code == 0
    assert runner.invoke(cli, ["token", "revoke", "ci-bot", "--storage", url]).exit_code == 2


def test_run_refuses_an_axis_a_variant_does_not_read_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from hpscape.service.cli import app

    spec = tmp_path / "betas.yaml"
    spec.write_text("name: betas\ndataset: synthetic\nmodel: shake_shake_8_2x8d\nvariants: [sgd, adamw]\n"
                    "epochs: 1\nbatch_size: 16\nhyperparameters: {lr: 0.001}\n"
                    "grid: {beta1: [0.5, 0.9], beta2: [0.9, 0.999]}\n")
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2, result.output
    assert "grid.beta1: beta1 does not apply to variant sgd" in " ".join(result.output.split())
    assert not (tmp_path / "x.db").exists(), "nothing was recorded"
