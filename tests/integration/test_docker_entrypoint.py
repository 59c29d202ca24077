"""docker/entrypoint.sh run on the host (no Docker engine here) against the local RabbitMQ and
PostgreSQL: it checks the secrets, waits for the broker and the database, fills in the
database password from its file and execs `cluebus run`; and it refuses in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.crypto.keys import initialise_key_directory
from services import bootstrap
from services import config as c
from services import provisioning
from tests.integration.conftest import _postgres_admin, bus_broker_environ

pytestmark = pytest.mark.integration

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"
AGENCY = "court"


@pytest.fixture
def node_environ(tmp_path):
    database = f"cluebus_docker_{uuid.uuid4().hex[:10]}"
    environ = {
        **bus_broker_environ(tmp_path, uuid.uuid4().hex[:10]),
        "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
        "CLUEBUS_KEYS_DIR": str(tmp_path / "keys"),
        # No password in the URL: the entrypoint adds it from the file (trust accepts any).
        "CLUEBUS_DATABASE_URL": f"postgresql+pg8000://postgres@127.0.0.1:5432/{database}",
    }
    config = c.load_config(environ=environ)
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=30))
    provisioning.setup(config)
    password_file = tmp_path / "database-password"
    password_file.write_text("not-needed-with-trust\n")
    password_file.chmod(0o600)
    engine = _postgres_admin()
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **environ, "PYTHON": sys.executable, "CLUEBUS": str(bin_dir / "cluebus"),
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "DATABASE_PASSWORD_FILE": str(password_file),
           "WAIT_SECONDS": "5"}
    try:
        yield config, env
    finally:
        try:
            provisioning.remove(config)
        finally:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            engine.dispose()


def _entrypoint(env, *args, timeout=60):
    return subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_the_entrypoint_starts_a_node_that_runs_until_terminated(node_environ):
    config, env = node_environ
    node = subprocess.Popen([str(ENTRYPOINT), "run", "--agency", AGENCY], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in node.stdout:
            seen.append(line)
            if f"{AGENCY} node running" in line:
                break
        assert seen and f"{AGENCY} node running" in seen[-1], "".join(seen)
        assert node.poll() is None, "".join(seen)
        assert "postgresql+pg8000://postgres" in seen[-1]
        node.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        rest, _ = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    assert node.returncode == 0, "".join(seen) + rest
    assert f"{AGENCY} node stopped" in rest
    # The database password (from its secret file) never reaches the node's output.
    assert "not-needed-with-trust" not in "".join(seen) + rest


def test_the_node_health_check_passes_through_the_entrypoint(node_environ):
    config, env = node_environ
    # The check runs beside a running node, whose start made its tables (reading commands
    # never create a database).
    bootstrap.open_store(config, AGENCY).dispose()
    done = _entrypoint(env, "quarantine", "--as", AGENCY, "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _one_line_failure(done, *words):
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cluebus-entrypoint: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_private_key_readable_by_others_is_refused_in_one_line(node_environ):
    config, env = node_environ
    key = Path(config[c.KEYS_DIR]) / "private" / f"{AGENCY}.key.json"
    key.chmod(0o644)
    _one_line_failure(_entrypoint(env, "run", "--agency", AGENCY), str(key), "644", "chmod 600")


def test_missing_broker_credentials_are_refused_in_one_line(node_environ):
    config, env = node_environ
    credentials = Path(config[c.BROKER][c.CREDENTIALS_DIR]) / f"{AGENCY}.json"
    credentials.unlink()
    _one_line_failure(_entrypoint(env, "run", "--agency", AGENCY), "no broker credentials", str(credentials))


def test_an_unconfigured_agency_is_refused_in_one_line(node_environ):
    config, env = node_environ
    _one_line_failure(_entrypoint(env, "run", "--agency", "customs"), "'customs' is not a configured agency")


def test_a_broker_that_never_answers_is_reported_in_one_line(node_environ):
    config, env = node_environ
    env = {**env, "CLUEBUS_BUS_URI": "amqp://127.0.0.1:1/cluebus", "WAIT_SECONDS": "2"}
    _one_line_failure(_entrypoint(env, "run", "--agency", AGENCY), "broker at 127.0.0.1:1",
                      "did not accept connections within 2s")
