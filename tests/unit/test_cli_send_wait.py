"""`cluebus send --wait` / `answer --wait`: after the commit, wait for the receipts the running
node records, one line each; exit 1 unless every one accepts (tests/integration/test_cli.py
has them arriving). Here no broker listens: the clue stays in the outbox and the wait says so."""

import json

import pytest

from schemas import registry as k
from services.cli.main import build_parser, main
from services.cli.node_cmd import DEFAULT_WAIT_SECONDS
from tests.fixtures.bodies import sample_body
from tests.unit.test_cli_show import MEDICAL, POLICE, referred  # noqa: F401 (the fixture)


def test_a_receipt_that_does_not_come_is_a_line_and_exit_1(referred, tmp_path, capsys):  # noqa: F811
    clue = tmp_path / "second-clue.json"
    body = dict(sample_body(k.CLUE_TRANSFER), clue_no="YB-2026-0002")
    clue.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    assert main(["send", "--as", MEDICAL, "--file", str(clue), "--to", POLICE, "--wait", "0.5"]) == 1
    captured = capsys.readouterr()
    assert "kept in the outbox" in captured.out
    waited = [line for line in captured.out.splitlines() if "no receipt within" in line]
    # One line per message sent: the clue, and its copy to the procuratorate.
    assert [line.split()[0] for line in waited] == [k.CLUE_TRANSFER, k.COPY_NOTICE]
    assert f"→ {POLICE}: no receipt within 0.5 s (pending)" in waited[0]
    assert all(f"the {MEDICAL} node, which records receipts" in line for line in waited)
    assert "Traceback" not in captured.err


def test_wait_alone_waits_the_default_and_bad_values_are_refused():
    parser = build_parser()
    argv = ["send", "--as", MEDICAL, "--file", "clue.json"]
    assert parser.parse_args(argv).wait is None
    assert parser.parse_args([*argv, "--wait"]).wait == DEFAULT_WAIT_SECONDS
    assert parser.parse_args([*argv, "--wait", "5"]).wait == 5.0
    assert parser.parse_args(["answer", "m-1", "--as", POLICE, "--kind", k.FILING_DECISION, "--file", "d.json",
                              "--wait", "2.5"]).wait == 2.5


@pytest.mark.parametrize("bad", ["soon", "0", "-3", "100000"])
def test_a_bad_wait_is_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["send", "--as", MEDICAL, "--file", "clue.json", "--wait", bad])
    assert exit_.value.code == 2
    assert "--wait" in capsys.readouterr().err
