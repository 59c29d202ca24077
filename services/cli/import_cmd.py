"""``cluebus import FILE --as AGENCY``: suspicious records (疑点数据) from a CSV or XLSX file,
each valid row sent as a clue transfer through the running node's ``refer_clues``; a report per
row. The whole file is read and checked first: a bad file sends nothing. Columns, options and
exit status: docs/import.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nameko.exceptions import RemoteError, RpcTimeout

from schemas.registry import CLUE_TRANSFER
from services import config as c
from services import settings
from services.control_client import ControlClients
from services.importer import cells, report
from services.importer.errors import CellInvalid, FileRefused
from services.importer.mapping import Defaults, RowMapper
from services.importer.plan import plan
from services.importer.reading import read_table
from services.importer.sending import ALREADY_SENT, FAILED, REFUSED, SENT, VALID, Outcome, refused, send_rows

from .errors import CommandError
from .running_node import require_running_node
from .progress import Progress

# One chunk of rows takes the node a second or two; a call unanswered this long is made again.
CALL_TIMEOUT_SECONDS = 120
# Exit status: 0 every row sent (or sent before), 1 some row refused or not sent, 2 a bad file
# or command (main's CommandError).
ROWS_REFUSED = 1


def register(commands) -> None:
    command = commands.add_parser(
        "import", help="send suspicious records from a CSV or XLSX file as clue transfers (docs/import.md)")
    command.add_argument("file", help="a CSV (UTF-8) or XLSX file with the columns of docs/import.md")
    command.add_argument("--as", dest="agency", required=True, help="the agency you act as (medical_security)")
    command.add_argument("--to", dest="recipient", help="the recipient (default: the agency's usual one, the police)")
    command.add_argument("--dry-run", action="store_true", help="check every row and report; send nothing")
    command.add_argument("--report", metavar="FILE", help="write the report per row as CSV to FILE (not stdout)")
    command.add_argument("--sheet", help="the sheet of a workbook with several")
    command.add_argument("--encoding", help="a CSV's encoding when it is not UTF-8, e.g. gb18030")
    command.add_argument("--attachments-dir", metavar="DIR",
                         help="where the attachment paths of the file start (default: the file's directory)")
    for option, helptext in (("--legal-basis", "the legal basis, for rows that leave 法律依据 blank"),
                             ("--team-reported-at", "the team's report time, for rows that leave 专班报告时间 blank"),
                             ("--approved-by", "who approved the transfers, for rows that leave 审批人 blank"),
                             ("--approved-at", "when they were approved, for rows that leave 审批时间 blank")):
        command.add_argument(option, help=helptext)
    command.set_defaults(handler=import_file)


def import_file(args) -> int:
    config = c.load_config(args.config)
    if args.agency not in c.agency_codes(config):
        raise CommandError(f"{args.agency!r} is not a configured agency ({', '.join(c.agency_codes(config))})")
    recipient, method = _refer_target(config, args.agency, args.recipient)
    settings_ = config.get(c.IMPORT) or {}
    zone = _zone(settings_.get(c.TIMEZONE) or "Asia/Shanghai")
    path = Path(args.file)
    try:
        table = read_table(path, max_bytes=int(settings_.get(c.MAX_FILE_BYTES, 100 * 2**20)),
                           encoding=args.encoding, sheet=args.sheet)
    except FileRefused as exc:
        raise CommandError(f"{exc}; nothing sent") from None
    if not args.dry_run:
        # Before checking every row: a long file need not wait to hear it.
        require_running_node(config, args.agency, why="nothing consumes its control queue", then=", then import again")
    mapper = RowMapper(defaults=_defaults(args, zone), zone=zone,
                       attachments_dir=Path(args.attachments_dir) if args.attachments_dir else path.parent)
    with Progress(f"checking {path.name}", total=len(table.rows), transient=True) as progress:
        planned = plan(table, mapper, agency=args.agency, recipient=recipient, progress=progress)
    valid = [row for row in planned if row.valid]
    outcomes = [refused(row) for row in planned if not row.valid]
    if args.dry_run:
        outcomes += [Outcome(row.row_number, row.record_no, VALID) for row in valid]
    elif valid:
        outcomes += _send(config, args.agency, method, valid, settings_)
    outcomes.sort(key=lambda outcome: outcome.row_number)
    if args.report:
        report.write_csv(outcomes, Path(args.report))
    else:
        report.write_text(outcomes, sys.stdout)
    shown = f"{path.name}{' (sheet ' + table.sheet + ')' if table.sheet else ''} → {recipient}"
    print(report.summary(shown, outcomes, dry_run=args.dry_run))
    wanted = (VALID,) if args.dry_run else (SENT, ALREADY_SENT)
    return 0 if all(outcome.outcome in wanted for outcome in outcomes) else ROWS_REFUSED


def _refer_target(config, agency: str, chosen: str | None) -> tuple[str, str]:
    """The recipient of the rows, and the node's RPC that refers many clues (``<refer action>s``)."""
    refer = settings.refer_action(config, agency)
    if refer is None:
        raise CommandError(f"{agency} does not refer clues (no refer action in ROLES_FILE): nothing to import as it")
    recipient = chosen or refer.recipients[0]
    if recipient not in c.agency_codes(config) or not settings.route_table(config).allows(CLUE_TRANSFER, agency,
                                                                                          recipient):
        raise CommandError(f"{agency} may not send clue transfers to {recipient!r} (schemas/routes.yaml)")
    return recipient, f"{refer.name}s"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CommandError(f"IMPORT.TIMEZONE {name!r} is not a time zone") from None


def _defaults(args, zone: ZoneInfo) -> Defaults:
    def moment(option: str, value: str | None):
        if value is None:
            return None
        try:
            return cells.timestamp(value, zone)
        except CellInvalid as exc:
            raise CommandError(f"{option}: {exc.detail}") from None
    return Defaults(legal_basis=(args.legal_basis or "").strip() or None,
                    team_reported_at=moment("--team-reported-at", args.team_reported_at),
                    approved_by=(args.approved_by or "").strip() or None,
                    approved_at=moment("--approved-at", args.approved_at))


# -- sending through the running node ------------------------------------------------------------
def _send(config, agency: str, method: str, rows, settings_) -> list[Outcome]:
    clients = ControlClients(config, [agency], timeout=CALL_TIMEOUT_SECONDS)
    started = time.monotonic()
    counted = dict.fromkeys((SENT, ALREADY_SENT, REFUSED, FAILED), 0)

    def answered(outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            counted[outcome.outcome] += 1
        rate = sum(counted.values()) / max(time.monotonic() - started, 1e-6)
        progress.advance(len(outcomes), note=f"{counted[SENT]} sent, {counted[ALREADY_SENT]} already sent, "
                                             f"{counted[REFUSED]} refused, {rate:.0f} rows/s")

    def failed(error: Exception) -> None:
        print(f"cluebus: a {method} call failed ({error.__class__.__name__}: {error}); calling again with the "
              f"same row keys", file=sys.stderr)
        if not isinstance(error, (RemoteError, RpcTimeout)):
            clients.close()  # the connection is gone: the next call opens a new one

    try:
        with Progress("sending", total=len(rows)) as progress:
            return send_rows(rows, lambda clues: getattr(clients[agency], method).call_async(clues),
                             chunk_size=int(settings_.get(c.CHUNK_ROWS, 200)),
                             in_flight=int(settings_.get(c.CALLS_IN_FLIGHT, 3)),
                             on_failure=failed, on_answered=answered)
    finally:
        clients.close()


