"""The command line as a clerk and an operator use it, against the real bus: a node run as
its own process and stopped with Ctrl-C, a clue sent from a JSON file, the inbox, an answer,
and the verified trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from schemas import registry as k
from services.cli.main import main
from tests.fixtures.bodies import sample_body

MEDICAL, POLICE = "medical_security", "public_security"


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
