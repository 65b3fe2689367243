"""Controller configuration that is refused at start-up, and what the controller passes on to sweep drivers."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner
from waiting import wait_until

from hpscape.service.api import create_app
from hpscape.service.cli import app as cli
from hpscape.service.queue import SubprocessLauncher
from hpscape.service.queue.driver import HEARTBEAT_S
from hpscape.service.settings import Settings, SettingsError


def settings(tmp_path, **overrides) -> Settings:
    values = dict(storage=f"sqlite:///{tmp_path / 'c.db'}", runs_dir=tmp_path / "runs", data_dir=tmp_path / "data",
                  ray_address=None, admin_token=None)
    values.update(overrides)
    return Settings(**values)


@pytest.mark.parametrize("stale_after_s", [1.0, HEARTBEAT_S])
def test_a_stale_timeout_not_above_the_heartbeat_interval_is_refused_naming_both(tmp_path, stale_after_s):
    with pytest.raises(SettingsError, match=rf"HPSCAPE_STALE_AFTER_S={stale_after_s:g} .*heartbeat interval "
                                            rf"\({HEARTBEAT_S:g} s\)"):
        create_app(settings(tmp_path, stale_after_s=stale_after_s), dispatch=False)


def test_a_stale_timeout_above_the_heartbeat_interval_is_accepted(tmp_path):
    app = create_app(settings(tmp_path, stale_after_s=HEARTBEAT_S * 3), dispatch=False)
    app.state.hpscape.close()


def test_serve_refuses_a_stale_timeout_below_the_heartbeat_interval(tmp_path):
    env = {"HPSCAPE_STORAGE": f"sqlite:///{tmp_path / 'c.db'}", "HPSCAPE_RUNS_DIR": str(tmp_path / "runs"),
           "HPSCAPE_STALE_AFTER_S": "2"}
    result = CliRunner().invoke(cli, ["serve", "--no-dispatch"], env=env)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "HPSCAPE_STALE_AFTER_S=2" in output and f"({HEARTBEAT_S:g} s)" in output
    assert not (tmp_path / "c.db").exists(), "refused before touching the database"


def test_drivers_do_not_get_the_api_tokens_in_their_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSCAPE_ADMIN_TOKEN", "admin-secret-0123456789abcdef")
    monkeypatch.setenv("HPSCAPE_TOKEN", "user-secret-0123456789abcdef")
    monkeypatch.setenv("HPSCAPE_DEVICE", "cpu")  # an ordinary setting, passed on
    dump = "import json, os; print('ENV=' + json.dumps(dict(os.environ)))"
    launcher = SubprocessLauncher(storage=f"sqlite:///{tmp_path / 'c.db'}", runs_dir=tmp_path / "runs",
                                  data_dir=tmp_path / "data", ray_address=None,
                                  driver_command=[sys.executable, "-c", dump])
    launched = launcher.launch("envsweep01", launch=1, resume=False)
    log_path = tmp_path / "runs" / "drivers" / "envsweep01.log"
    assert launched.log_path == str(log_path)
    log = wait_until("the fake driver to print its environment",
                     lambda: (text := log_path.read_text()).endswith("}\n") and "\nENV=" in text and text, timeout=30)
    env = json.loads(log.split("\nENV=", 1)[1].splitlines()[0])
    assert "HPSCAPE_ADMIN_TOKEN" not in env and "HPSCAPE_TOKEN" not in env
    assert "secret" not in log
    assert env["HPSCAPE_STORAGE"] == f"sqlite:///{tmp_path / 'c.db'}" and env["HPSCAPE_DEVICE"] == "cpu"
