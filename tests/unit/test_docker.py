"""docker/: what can be checked without a Docker engine (this machine has only a client).

The compose file parses, runs every configured agency, uses only `cluebus` commands and
options that exist and only CLUEBUS_* variables services/cluebus.yaml reads, mounts each
node's own secrets where its configuration looks for them, and puts no secret in the
environment or the image. The entrypoint itself runs on the host in
tests/integration/test_docker_entrypoint.py."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from adapters.crypto.keys import KeyDirectory
from adapters.transport.credentials import CredentialStore
from services import config as c
from services.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
CONFIG_TEXT = (ROOT / "services" / "cluebus.yaml").read_text(encoding="utf-8")
READ_BY_CONFIG = set(re.findall(r"\$\{(CLUEBUS_[A-Z0-9_]+)", CONFIG_TEXT))
AGENCIES = c.agency_codes(c.load_config(environ={}))
ENTRYPOINT = "cluebus-entrypoint"


def _node_services() -> dict[str, dict]:
    """agency -> its service, for the services whose command is `run --agency X`."""
    nodes = {}
    for name, service in SERVICES.items():
        command = service.get("command")
        if command and command[:2] == ["run", "--agency"]:
            nodes[command[2]] = service
    return nodes


def _parses(argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of saying "no such command or option"
        pytest.fail(f"`cluebus {shlex.join(argv)}` is not a valid cluebus command line (exit {exc.code})")
    assert callable(args.handler)


def _cluebus_commands():
    """Every cluebus command line in the compose file: `command:`s and health checks."""
    for name, service in SERVICES.items():
        if "command" in service:
            yield name, list(service["command"])
        test = (service.get("healthcheck") or {}).get("test") or []
        words = shlex.split(test[1]) if test[:1] == ["CMD-SHELL"] else test[1:]
        words = [w for w in words if not w.startswith((">", "2>"))]
        if words and words[0] in ("cluebus", ENTRYPOINT):
            yield name, words[1:]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_compose_file_runs_every_configured_agency_and_the_office():
    nodes = _node_services()
    assert sorted(nodes) == sorted(AGENCIES)
    assert len(AGENCIES) == 7 and "joint_office" in nodes
    assert {"rabbitmq", "postgres"} <= set(SERVICES)
    assert "127.0.0.1:8000:8000" in nodes["joint_office"]["ports"]
    assert _environment(nodes["joint_office"])["CLUEBUS_OFFICE_HTTP"].endswith(":8000")
    for service in nodes.values():
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_cluebus_command_in_the_compose_file_exists():
    commands = list(_cluebus_commands())
    assert len(commands) >= 2 * len(AGENCIES) - 1  # a run and a health check per node (the office: HTTP)
    for name, argv in commands:
        _parses(argv)


def test_an_unknown_command_or_option_would_be_caught():
    with pytest.raises(pytest.fail.Exception):
        _parses(["run", "--agencies", "court"])
    with pytest.raises(pytest.fail.Exception):
        _parses(["start", "--agency", "court"])


def test_every_service_has_a_health_check():
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "rabbitmq-diagnostics" in SERVICES["rabbitmq"]["healthcheck"]["test"]
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"]


def test_every_cluebus_variable_is_one_the_configuration_reads():
    used = set(re.findall(r"CLUEBUS_[A-Z0-9_]+", (DOCKER / "compose.yaml").read_text(encoding="utf-8")))
    used |= set(re.findall(r"CLUEBUS_[A-Z0-9_]+", (DOCKER / "Dockerfile").read_text(encoding="utf-8")))
    assert used, "the compose file configures the nodes with CLUEBUS_* variables"
    assert used <= READ_BY_CONFIG, f"not read by services/cluebus.yaml: {sorted(used - READ_BY_CONFIG)}"
    for service in _node_services().values():
        assert set(_environment(service)) <= READ_BY_CONFIG


def test_each_node_mounts_its_own_secrets_where_its_configuration_looks():
    defined = COMPOSE["secrets"]
    for agency, service in _node_services().items():
        config = c.load_config(environ=_environment(service))
        targets = {s["target"]: s["source"] for s in service["secrets"]}
        keys = KeyDirectory(config[c.KEYS_DIR])
        # The trust anchor and the first signed keyring as secrets; the node keeps the later
        # versions in KEYRING_DIR, a writable volume, not among the read-only secrets.
        expected = {str(keys.private_path(agency)), str(keys.trust_anchor_path), str(keys.signed_keyring_path),
                    str(CredentialStore(config[c.BROKER][c.CREDENTIALS_DIR]).path_for(agency))}
        assert config[c.KEYRING_DIR] and not str(config[c.KEYRING_DIR]).startswith("/run/secrets")
        assert any(str(config[c.KEYRING_DIR]).startswith(volume.split(":")[1]) for volume in service["volumes"])
        if agency in c.observer_codes(config):
            expected.add(str(config[c.OFFICE][c.ACCOUNTS_FILE]))
        assert expected <= set(targets), f"{agency}: missing {expected - set(targets)}"
        for source in targets.values():
            assert source in defined
        others = [a for a in AGENCIES if a != agency]
        assert not any(f"{other}-" in source for source in targets.values() for other in others), \
            f"{agency} is given another agency's secret"
        assert c.database_url(config, agency).endswith(f"/cluebus_{agency}")


def test_secrets_are_files_and_no_password_is_in_the_environment():
    for name, secret in COMPOSE["secrets"].items():
        assert set(secret) == {"file"}, f"secret {name} is not a file"
        assert secret["file"].startswith("./secrets/")
    uri_with_password = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
    for name, service in SERVICES.items():
        for key, value in _environment(service).items():
            assert not uri_with_password.search(value), f"{name}: {key} holds a password"
            if re.search(r"PASS|SECRET|TOKEN|KEY", key) and not key.endswith(("_FILE", "_DIR")):
                pytest.fail(f"{name}: {key} looks like a secret in the environment")
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert "guest:guest" not in text and "RABBITMQ_DEFAULT_PASS" not in text


def test_the_broker_imports_the_definitions_it_is_given():
    conf = (DOCKER / "rabbitmq" / "10-cluebus.conf").read_text(encoding="utf-8")
    path = re.search(r"^definitions\.local\.path\s*=\s*(\S+)", conf, re.M).group(1)
    assert path in [s["target"] for s in SERVICES["rabbitmq"]["secrets"]]
    assert c.load_config(environ={})[c.TRANSPORT][c.QUEUE_TYPE] == "quorum"


def test_the_database_init_script_reads_every_configured_agency():
    script = DOCKER / "postgres-init" / "10-cluebus-databases.sh"
    listed = subprocess.run([str(script), "--list", str(ROOT / "services" / "cluebus.yaml")],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == AGENCIES
    mounts = SERVICES["postgres"]["volumes"]
    assert "./postgres-init:/docker-entrypoint-initdb.d:ro" in mounts


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_dockerfile_bakes_in_no_secret_and_ends_with_the_entrypoint():
    steps = _instructions(DOCKER / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    copied = " ".join(args for op, args in steps if op in ("COPY", "ADD"))
    for secret in ("keys", "credentials", "var", "secrets", ".sqlite3", ".venv", "office-accounts"):
        assert secret not in copied.split() and f"/{secret}" not in copied and f"{secret}/" not in copied
    assert any(op == "RUN" and "setuptools>=68,<81" in args for op, args in steps)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert steps[-1] == ("ENTRYPOINT", '["/usr/local/bin/cluebus-entrypoint"]')
    assert any(op == "COPY" and args == "docker/entrypoint.sh /usr/local/bin/cluebus-entrypoint"
               for op, args in steps)


def test_the_build_context_leaves_out_data_keys_and_credentials():
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    for pattern in (".venv", "var", "keys", "credentials", "**/*.sqlite3", "docker/secrets", "**/*.key.json"):
        assert pattern in ignored
    # ... but not what the image is built from.
    for needed in ("services", "adapters", "schemas", "pyproject.toml", "README.md", "docker"):
        assert needed not in ignored


def test_the_entrypoint_upgrades_the_database_with_a_real_command_before_it_execs_the_node():
    script = (DOCKER / "entrypoint.sh").read_text(encoding="utf-8")
    upgrade = script.index('db upgrade --agency "$agency"')
    assert upgrade < script.rindex('exec "$CLUEBUS" "$@"')
    _parses(["db", "upgrade", "--agency", "court"])
    _parses(["--config", "cluebus.yaml", "db", "upgrade", "--agency", "court"])
