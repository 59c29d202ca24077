"""docker/entrypoint.sh run on the host (no Docker engine here) against the local RabbitMQ and
PostgreSQL: it checks the secrets, waits for the broker and the database, fills in the
database password from its file, upgrades the node's database (a new one gets its tables, one
of an older release is migrated) and execs `cluebus run`; and it refuses in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from alembic import command
from sqlalchemy import text

from adapters.crypto.keys import initialise_key_directory
from adapters.storage import migrations
from adapters.storage.store import make_engine
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


def _run_until_running_then_stop(env) -> str:
    """The entrypoint's `run --agency court` until the node says it runs, then SIGTERM, as
    `docker stop` sends to PID 1; everything it printed."""
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
        node.send_signal(signal.SIGTERM)
        rest, _ = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    assert node.returncode == 0, "".join(seen) + rest
    assert f"{AGENCY} node stopped" in rest
    return "".join(seen) + rest


def _revisions(config) -> set[str]:
    engine = make_engine(c.database_url(config, AGENCY))
    try:
        with engine.connect() as connection:
            return set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    finally:
        engine.dispose()


def test_the_entrypoint_starts_a_node_that_runs_until_terminated(node_environ):
    config, env = node_environ
    output = _run_until_running_then_stop(env)
    # The new, empty database got its tables from the upgrade, before the node started.
    assert f"cluebus-entrypoint: database {AGENCY}: node tables" in output, output
    assert output.index("cluebus-entrypoint: database") < output.index(f"{AGENCY} node running")
    assert _revisions(config) == set(migrations.heads(False))
    # The database password (from its secret file) never reaches the node's output.
    assert "not-needed-with-trust" not in output


def test_the_first_signed_keyring_is_put_where_the_node_keeps_its_keyring(node_environ, tmp_path):
    """As in docker/compose.yaml: the key directory is read-only secrets, KEYRING_DIR a volume."""
    config, env = node_environ
    keys = Path(config[c.KEYS_DIR])
    keyring_dir = tmp_path / "volume" / "keyring"
    env = {**env, "CLUEBUS_KEYRING_DIR": str(keyring_dir)}
    output = _run_until_running_then_stop(env)
    assert f"{AGENCY} node running" in output, output
    assert (keyring_dir / "keyring.signed.json").read_bytes() == (keys / "keyring.signed.json").read_bytes()
    # Without the first keyring among the secrets: one line, no node.
    (keyring_dir / "keyring.signed.json").unlink()
    (keys / "keyring.signed.json").unlink()
    result = _entrypoint(env, "run", "--agency", AGENCY)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "no signed keyring at" in result.stderr


def test_a_database_of_an_older_release_is_upgraded_before_the_node_starts(node_environ):
    config, env = node_environ
    engine = make_engine(c.database_url(config, AGENCY))
    try:
        with engine.begin() as connection:  # as an older release left it: its first revision
            command.upgrade(migrations.alembic_config(connection), "node_0001")
    finally:
        engine.dispose()
    assert _revisions(config) == {"node_0001"}
    # Without the entrypoint, the node refuses it as behind (tests/integration/test_migrations.py).
    output = _run_until_running_then_stop(env)
    head = migrations.heads(False)[0]
    assert f"cluebus-entrypoint: database {AGENCY}: node tables node_0001 → {head}" in output, output
    assert _revisions(config) == {head}
    # Once at the head, a restart has nothing to upgrade.
    assert f"cluebus-entrypoint: database {AGENCY}: already at {head}" in _run_until_running_then_stop(env)


def test_a_database_the_upgrade_cannot_migrate_is_refused_in_one_line_and_the_node_not_started(node_environ):
    config, env = node_environ
    engine = make_engine(c.database_url(config, AGENCY))
    try:
        with engine.begin() as connection:  # recorded by a newer release than this one
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('node_9999')"))
    finally:
        engine.dispose()
    done = _entrypoint(env, "run", "--agency", AGENCY)
    _one_line_failure(done, f"the database of {AGENCY} was not upgraded", "node_9999", "unknown to this release")
    assert f"{AGENCY} node running" not in done.stdout
    assert _revisions(config) == {"node_9999"}


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
