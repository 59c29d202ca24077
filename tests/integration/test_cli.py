"""The command line as a clerk and an operator use it, against the real bus: a node run as
its own process and stopped with Ctrl-C, a clue sent from a JSON file, the inbox, an answer,
and the verified trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schemas import registry as k
from services import settings
from services.cli.main import main
from tests.fixtures.bodies import sample_body

MEDICAL, POLICE, PROCURATORATE = "medical_security", "public_security", "procuratorate"


def _cli(bus, monkeypatch, capsys, *argv):
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_node_runs_as_its_own_process_and_stops_cleanly_on_ctrl_c(bus):
    env = {**os.environ, **bus.environ}
    cluebus = str(Path(sys.executable).with_name("cluebus"))  # the console script, as a user runs it
    node = subprocess.Popen([cluebus, "run", "--agency", POLICE], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in node.stdout:  # until the node says it runs (or the output ends: it died)
            seen.append(line)
            if f"{POLICE} node running" in line:
                break
        assert f"{POLICE} node running" in "".join(seen), "".join(seen)
        node.send_signal(signal.SIGINT)
        rest, _ = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, rest
    assert f"{POLICE} node stopped" in rest and "Traceback" not in rest


def test_send_inbox_answer_and_trace_from_the_command_line(bus, tmp_path, monkeypatch, capsys):
    bus.sync_clock()
    clue, decision = tmp_path / "clue.json", tmp_path / "decision.json"
    clue.write_text(json.dumps(sample_body(k.CLUE_TRANSFER), ensure_ascii=False), encoding="utf-8")
    decision.write_text(json.dumps(sample_body(k.FILING_DECISION), ensure_ascii=False), encoding="utf-8")
    bus.create(MEDICAL, POLICE)

    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt"):
        bus.start(MEDICAL, POLICE)
        code, out, err = _cli(bus, monkeypatch, capsys, "send", "--as", MEDICAL, "--file", str(clue),
                              "--to", POLICE)
        assert code == 0, err
        assert "clue_transfer" in out and "published" in out

    code, out, _ = _cli(bus, monkeypatch, capsys, "inbox", "--as", POLICE, "--json")
    [received] = json.loads(out)
    assert received["kind"] == k.CLUE_TRANSFER and received["status"] == "accepted"

    with bus.waiter(MEDICAL, kind=k.FILING_DECISION, status="accepted"):
        code, out, err = _cli(bus, monkeypatch, capsys, "answer", received["message_id"], "--as", POLICE,
                              "--kind", k.FILING_DECISION, "--file", str(decision))
        assert code == 0, err

    code, out, err = _cli(bus, monkeypatch, capsys, "trace", received["referral_id"], "--json")
    assert code == 0, err
    trace = json.loads(out)
    kinds = [step["kind"] for step in trace["steps"]]
    assert kinds[0] == k.CLUE_TRANSFER and k.FILING_DECISION in kinds and k.RECEIPT in kinds
    assert all(step["signature"]["ok"] for step in trace["steps"])
    assert all(node["audit_chain"]["ok"] for node in trace["nodes"].values())

    # A refused action is one line naming the rule, and changes nothing.
    code, _, err = _cli(bus, monkeypatch, capsys, "answer", received["message_id"], "--as", POLICE,
                        "--kind", k.FILING_DECISION, "--file", str(decision))
    assert code == 2 and "lifecycle.transition" in err and len(err.strip().splitlines()) == 1


def test_send_wait_returns_once_every_receipt_is_recorded(bus, tmp_path, monkeypatch, capsys):
    """`send --wait`: the clue and its copy to the procuratorate, each receipt recorded by the
    running sender node, one line each; exit 0 as both accepted."""
    bus.sync_clock()
    clue = tmp_path / "clue.json"
    clue.write_text(json.dumps(sample_body(k.CLUE_TRANSFER), ensure_ascii=False), encoding="utf-8")
    bus.create(MEDICAL, POLICE, PROCURATORATE)
    bus.start(MEDICAL, POLICE, PROCURATORATE)
    code, out, err = _cli(bus, monkeypatch, capsys, "send", "--as", MEDICAL, "--file", str(clue), "--to", POLICE,
                          "--wait", "60")
    assert code == 0, out + err
    receipts = [line for line in out.splitlines() if ": receipt " in line]
    assert len(receipts) == 2, out
    assert any(line.split()[0] == k.CLUE_TRANSFER and line.endswith(f"→ {POLICE}: receipt accepted")
               for line in receipts), out
    assert any(line.split()[0] == k.COPY_NOTICE and line.endswith(f"→ {PROCURATORATE}: receipt accepted")
               for line in receipts), out
    code, out, _ = _cli(bus, monkeypatch, capsys, "outbox", "--as", MEDICAL, "--json")
    assert {row["state"] for row in json.loads(out)} == {"receipted"}


# -- a PostgreSQL database that is not there: one line naming it and how to create it --------
def _missing_postgres_database(tmp_path, monkeypatch, capsys) -> str:
    """Keys here, and every agency's DATABASE_URL on a PostgreSQL database nobody created."""
    prefix = f"cluebus_absent_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))
    monkeypatch.setenv("CLUEBUS_DATABASE_URL", f"postgresql+pg8000://postgres@127.0.0.1:5432/{prefix}_{{agency}}")
    assert main(["keys", "init"]) == 0
    capsys.readouterr()
    return prefix


def test_a_missing_postgres_database_is_one_line_with_the_command_that_creates_it(tmp_path, monkeypatch, capsys):
    prefix = _missing_postgres_database(tmp_path, monkeypatch, capsys)
    name = f"{prefix}_{POLICE}"
    for argv in (["inbox", "--as", POLICE], ["trace", "some-referral", "--as", POLICE],
                 ["run", "--agency", POLICE]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"the database {name} of {POLICE} does not exist" in err, err
        assert f"`createdb -h 127.0.0.1 -p 5432 -U postgres {name}`" in err, err


def test_trace_without_as_on_postgres_with_no_database_created_is_one_line(tmp_path, monkeypatch, capsys):
    prefix = _missing_postgres_database(tmp_path, monkeypatch, capsys)
    assert main(["trace", "some-referral"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "no node database found here" in err and prefix in err and "createdb" in err


# -- send and run when the bus cannot be used: say why; exit non-zero unless it passes by waiting --
_SQLITE_ONLY = {"argnames": "database_url", "argvalues": ["sqlite"], "indirect": True}


def _send_clue(bus, tmp_path, monkeypatch, capsys, **environ):
    clue = tmp_path / "clue.json"
    clue.write_text(json.dumps(sample_body(k.CLUE_TRANSFER), ensure_ascii=False), encoding="utf-8")
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    code = main(["send", "--as", MEDICAL, "--file", str(clue), "--to", POLICE])
    out, err = capsys.readouterr()
    code_outbox = main(["outbox", "--as", MEDICAL, "--json"])
    outbox, _ = capsys.readouterr()
    assert code_outbox == 0
    return code, out, err, json.loads(outbox)


def _missing_vhost(bus) -> str:
    return bus.environ["CLUEBUS_BUS_URI"] + "-not-there"



@pytest.mark.parametrize(**_SQLITE_ONLY)
def test_send_on_a_missing_virtual_host_says_so_keeps_the_message_and_fails(bus, tmp_path, monkeypatch, capsys):
    code, out, err, outbox = _send_clue(bus, tmp_path, monkeypatch, capsys, CLUEBUS_BUS_URI=_missing_vhost(bus))
    assert code == 1, out + err
    assert "may not open the virtual host" in out and "-not-there" in out
    assert "kept in the outbox, but this does not pass by waiting" in out
    assert "committed but not published" in err and "Traceback" not in err
    assert {row["state"] for row in outbox} == {"pending"}


@pytest.mark.parametrize(**_SQLITE_ONLY)
def test_send_with_a_wrong_password_says_so_keeps_the_message_and_fails(bus, tmp_path, monkeypatch, capsys):
    from dataclasses import replace
    from adapters.transport.credentials import BrokerAccount
    store = settings.credential_store(bus.config)
    mine = store.load(MEDICAL)
    store.save(replace(mine, bus=BrokerAccount(mine.bus.user, "not-the-password")))
    code, out, err, outbox = _send_clue(bus, tmp_path, monkeypatch, capsys)
    assert code == 1, out + err
    assert "the broker refused medical_security's bus account" in out and "wrong password" in out
    assert "not-the-password" not in out + err
    assert "kept in the outbox" in out and {row["state"] for row in outbox} == {"pending"}


@pytest.mark.parametrize(**_SQLITE_ONLY)
def test_send_when_the_broker_cannot_be_reached_keeps_the_message_and_succeeds(bus, tmp_path, monkeypatch, capsys):
    code, out, err, outbox = _send_clue(bus, tmp_path, monkeypatch, capsys,
                                        CLUEBUS_BUS_URI="amqp://127.0.0.1:1/cluebus")  # nothing listens there
    assert code == 0, out + err
    assert "cannot reach the bus at amqp://" in out and "@127.0.0.1:1/cluebus" in out and "ECONNREFUSED" in out
    assert "kept in the outbox: the node's relay publishes it when the broker can be reached" in out
    assert {row["state"] for row in outbox} == {"pending"}


@pytest.mark.parametrize(**_SQLITE_ONLY)
def test_run_on_a_missing_virtual_host_does_not_advise_starting_the_broker(bus, monkeypatch, capsys):
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLUEBUS_BUS_URI", _missing_vhost(bus))
    assert main(["run", "--agency", POLICE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "may not open the virtual host" in err and "rabbitmq-server" not in err


@pytest.mark.parametrize(**_SQLITE_ONLY)
def test_run_on_a_missing_control_virtual_host_says_so_in_one_line(bus, monkeypatch, capsys):
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLUEBUS_CONTROL_URI", bus.environ["CLUEBUS_CONTROL_URI"] + "-not-there")
    assert main(["run", "--agency", POLICE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{POLICE}'s control account may not open the virtual host" in err and "rabbitmq-server" not in err
