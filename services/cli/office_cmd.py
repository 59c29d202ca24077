"""``cluebus overdue`` and ``cluebus stats``: the joint-meeting office's views, read from the
office's own database (run the office with ``cluebus run --agency joint_office``);
``cluebus office account add|list|remove``: the staff accounts that may log in to its
dashboard and API (``OFFICE.ACCOUNTS_FILE``); and ``cluebus calendar check``: which years the
office's working-day calendar covers."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from adapters.crypto.timestamps import format_timestamp
from services import config as c
from services.office import handlers
from services.office.accounts import AccountsError, accounts_file, check_name, password_problem
from services.office.calendar import CalendarError
from services.office.stats import overdue_steps
from services.office.tracking import CALENDAR_MISSING
from adapters.crypto.exceptions import CryptoError
from services.bootstrap import DatabaseMissing, DatabaseUnavailable, office_calendar, office_context
from services.protocol.rules import CALENDAR_MISSING as CALENDAR_MISSING_RULE

from .errors import CommandError
from .times import time_format


def register(commands) -> None:
    overdue = commands.add_parser("overdue", help="steps past (or nearing) their legal limit")
    overdue.add_argument("--as-of", help="a moment (YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD; default now)")
    overdue.add_argument("--json", action="store_true")
    overdue.set_defaults(handler=show_overdue)

    stats = commands.add_parser("stats", help="figures per agency and period (报表台账)")
    stats.add_argument("--from", dest="period_from", help="start of the period (default: 30 days before --to)")
    stats.add_argument("--to", dest="period_to", help="end of the period, exclusive (default: --as-of)")
    stats.add_argument("--as-of", help="the moment the figures are known at (YYYY-MM-DDTHH:MM:SSZ or "
                                       "YYYY-MM-DD; default now): the same snapshot as `overdue --as-of`")
    out = stats.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true", help="CSV on standard output")
    out.add_argument("--xlsx", metavar="FILE", help="write an Excel workbook")
    stats.set_defaults(handler=show_stats)

    calendar = commands.add_parser("calendar", help="the office's working-day calendar (holidays, make-up days)")
    calendar_commands = calendar.add_subparsers(dest="calendar_command", metavar="ACTION", required=True)
    check = calendar_commands.add_parser(
        "check", help="the years the calendar covers; fails when this year or the next is missing")
    check.add_argument("--today", help="the day to check from (YYYY-MM-DD; default: today in OFFICE.TIMEZONE)")
    check.set_defaults(handler=check_calendar)

    office = commands.add_parser("office", help="the joint-meeting office's staff accounts")
    office_commands = office.add_subparsers(dest="office_command", metavar="GROUP", required=True)
    account = office_commands.add_parser("account", help="accounts that may log in to the dashboard and API")
    actions = account.add_subparsers(dest="account_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from one line of standard input instead of the terminal")
    add.add_argument("--replace", action="store_true", help="set a new password for an existing account")
    add.set_defaults(handler=add_account)
    listing = actions.add_parser("list", help="the accounts and when they were made (never their hashes)")
    listing.set_defaults(handler=list_accounts)
    remove = actions.add_parser("remove", help="remove an account; its sessions end at their next request")
    remove.add_argument("name")
    remove.set_defaults(handler=remove_account)


def parse_moment(text: str | None, default: datetime, local_zone: str = "Asia/Shanghai") -> datetime:
    """A UTC moment, or a bare date read as local midnight in the office's time zone (the
    office counts days as the law does, locally)."""
    if not text:
        return default
    for form in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise CommandError(f"{text!r} is not a moment: use YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD") from None
    return day.replace(tzinfo=ZoneInfo(local_zone)).astimezone(timezone.utc)


def _office(args):
    """The office's context on its database (never made here: a reading command), its local
    time zone, and how to show times (one configuration read)."""
    config = c.load_config(args.config)
    when = time_format(args, config)
    try:
        ctx = office_context(config, create=False)
    except CryptoError as exc:
        raise CommandError(f"[{exc.rule}] {exc.detail}") from None
    except (DatabaseMissing, DatabaseUnavailable) as exc:
        raise CommandError(str(exc)) from None
    return ctx, config[c.OFFICE][c.TIMEZONE], when


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"


def show_overdue(args) -> int:
    ctx, zone, when = _office(args)
    as_of = parse_moment(args.as_of, datetime.now(timezone.utc), zone)
    rows = handlers.overdue(ctx, as_of)
    if args.json:
        json.dump({"as_of": format_timestamp(as_of), "steps": rows}, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    missing = [r for r in rows if r["level"] == CALENDAR_MISSING]
    print(f"as of {when(as_of)}: {sum(r['level'] not in ('warning', CALENDAR_MISSING) for r in rows)} "
          f"overdue, {sum(r['level'] == 'warning' for r in rows)} nearing their limit"
          + (f", {len(missing)} with no limit (calendar missing)" if missing else ""))
    for row in rows:
        if row["level"] == CALENDAR_MISSING:
            late = f"limit unknown: no calendar for {row.get('calendar_missing')}"
        elif row["overdue_seconds"]:
            late = _duration(row["overdue_seconds"]) + " late"
        else:
            late = f"due {when(row['due_at'])}"
        print(f"  [{row['level']:<9}] {row['late_agency']:<16} {row['rule']:<26} {late:<16} "
              f"referral {row['referral_id']} (waiting: {row['counterpart']})")
    return 0


def check_calendar(args) -> int:
    """The covered years, one line; exit 1 with one line when this year or the next is not
    covered (a step counted into a missing year gets no limit)."""
    config = c.load_config(args.config)
    try:
        calendar = office_calendar(config)
    except CalendarError as exc:
        raise CommandError(f"[{exc.rule}] {exc}") from None
    if args.today:
        try:
            today = datetime.strptime(args.today, "%Y-%m-%d").date()
        except ValueError:
            raise CommandError(f"--today {args.today!r} is not a date YYYY-MM-DD") from None
    else:
        today = datetime.now(ZoneInfo(calendar.timezone)).date()
    source = config[c.OFFICE].get(c.CALENDAR_FILE) or "the shipped services/office/holidays_cn.yaml"
    years = ", ".join(str(year) for year in sorted(calendar.covered_years)) or "no year"
    print(f"calendar {source} ({calendar.timezone}): covers {years}")
    missing = calendar.missing_years((today.year, today.year + 1))
    if missing:
        print(f"cluebus: [{CALENDAR_MISSING_RULE}] the calendar does not cover "
              + " and ".join(f"{year} ({'this year' if year == today.year else 'next year'})" for year in missing)
              + ": add the State Council's holiday notice for it; until then steps counted into it have no limit",
              file=sys.stderr)
        return 1
    return 0


def show_stats(args) -> int:
    ctx, zone, when = _office(args)
    as_of = parse_moment(args.as_of, datetime.now(timezone.utc), zone)
    period_to = parse_moment(args.period_to, as_of, zone)
    period_from = parse_moment(args.period_from, period_to - timedelta(days=30), zone)
    if period_from >= period_to:
        raise CommandError("--from must be before --to (default --to: --as-of, default now)")
    if as_of < period_from:
        raise CommandError("--as-of must not precede --from: nothing of the period is known yet")
    messages, steps, marks = handlers.load(ctx)
    report = handlers.report(ctx, messages, steps, period_from, period_to, as_of)
    if args.json:
        json.dump(report.to_json(), sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif args.csv:
        from adapters.exporters.stats_csv import write_csv
        write_csv(report, sys.stdout)
    elif args.xlsx:
        from adapters.exporters.stats_xlsx import write_xlsx
        snap = handlers.snapshot_at(ctx, as_of, (messages, steps, marks))
        write_xlsx(report, args.xlsx, overdue_steps(snap), as_of=as_of)
        print(f"wrote {args.xlsx}")
    else:
        data = report.to_json()
        print(f"{when(data['period_from'])} .. {when(data['period_to'])} (as of {when(data['as_of'])})")
        print(f"  {'agency':<18}{'sent':>6}{'recv':>6}{'rcpt ok/late/open':>20}{'decisions ok/late/open':>24}"
              f"{'opened/refused':>16}{'completion':>12}{'on time':>9}{'open overdue':>14}{'closed late':>13}")
        for row in data["agencies"] + [data["totals"]]:
            rate = "-" if row["completion_rate"] is None else f"{row['completion_rate'] * 100:.0f}%"
            on_time = "-" if row["on_time_rate"] is None else f"{row['on_time_rate'] * 100:.0f}%"
            print(f"  {row['agency']:<18}{row['transfers_sent']:>6}{row['transfers_received']:>6}"
                  f"{row['receipts_on_time']:>10}/{row['receipts_late']}/{row['receipts_open']:<6}"
                  f"{row['decisions_on_time']:>14}/{row['decisions_late']}/{row['decisions_open']:<6}"
                  f"{row['cases_opened']:>10}/{row['cases_refused']:<5}{rate:>12}{on_time:>9}"
                  f"{row['open_overdue_steps']:>14}{row['steps_late']:>13}")
        for note in data.get("notes", ()):
            print(f"  note: {note}")
    return 0


# -- office account ------------------------------------------------------------------------------
def _accounts(args):
    return accounts_file(c.load_config(args.config))


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: pipe it in with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    problem = password_problem(first)
    if problem:
        raise CommandError(problem)
    if getpass.getpass("the same password again: ") != first:
        raise CommandError("the two passwords differ; nothing changed")
    return first


def add_account(args) -> int:
    accounts = _accounts(args)
    try:
        check_name(args.name)
        existing = args.name in accounts.accounts()
        if existing and not args.replace:
            raise CommandError(f"account {args.name} already exists in {accounts.path}; "
                               "pass --replace to set a new password")
        accounts.add(args.name, _read_password(args), replace=args.replace)
    except AccountsError as exc:
        raise CommandError(str(exc)) from None
    print(f"{'new password for' if existing else 'added'} account {args.name} in {accounts.path} (mode 0600)")
    return 0


def list_accounts(args) -> int:
    config = c.load_config(args.config)
    accounts, when = accounts_file(config), time_format(args, config)
    try:
        found = accounts.accounts()
    except AccountsError as exc:
        raise CommandError(str(exc)) from None
    if not found:
        print(f"(no accounts in {accounts.path}; add one with `cluebus office account add NAME`)")
    for name in sorted(found):
        print(f"{name}  created {when(found[name].created_at)}")
    return 0


def remove_account(args) -> int:
    accounts = _accounts(args)
    try:
        accounts.remove(args.name)
    except AccountsError as exc:
        raise CommandError(str(exc)) from None
    print(f"removed account {args.name} from {accounts.path}; its sessions end at their next request")
    return 0
