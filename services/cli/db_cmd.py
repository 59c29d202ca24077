"""``cluebus db``: a node's database schema (adapters/storage/migrations).

``db upgrade --agency X`` (or ``--all``) brings a database to this release's schema, a
database made by round 1 (no version table) included; a node refuses to start on a database
behind it. ``db current`` prints each database's revision and exits 1 if one is not current.
Neither creates a database for an agency that has none here (a SQLite file not there yet, a
PostgreSQL database not created), except ``upgrade --agency X``, asked by name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from adapters.storage import migrations
from adapters.storage.store import make_engine
from services import config as c

from .errors import CommandError


def register(commands) -> None:
    db = commands.add_parser("db", help="a node's database schema: upgrade it, show its revision")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    upgrade = actions.add_parser("upgrade", help="migrate an agency's database to this release's schema")
    which = upgrade.add_mutually_exclusive_group(required=True)
    which.add_argument("--agency", help="the agency whose database to upgrade")
    which.add_argument("--all", action="store_true",
                       help="every configured agency that has a database here")
    upgrade.set_defaults(handler=upgrade_databases)

    current = actions.add_parser("current", help="each database's revision (exit 1 if one is behind)")
    current.add_argument("--agency", help="one agency (default: every configured one)")
    current.set_defaults(handler=show_current)


def _agencies(args, config) -> list[str]:
    agencies = c.agency_codes(config)
    if getattr(args, "agency", None):
        if args.agency not in agencies:
            raise CommandError(f"{args.agency!r} is not a configured agency ({', '.join(agencies)})")
        return [args.agency]
    return list(agencies)


def _missing_sqlite_file(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        if not Path(parsed.database).exists():
            return parsed.database
    return None


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _cannot_open(agency: str, url: str, exc: DBAPIError) -> str:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return f"{agency}: cannot open its database {_shown(url)}: {reason}"


def upgrade_databases(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    failed = 0
    for agency in _agencies(args, config):
        url = c.database_url(config, agency)
        if args.all and _missing_sqlite_file(url):
            print(f"{agency}: no database here ({_missing_sqlite_file(url)}), skipped")
            continue
        engine = make_engine(url)
        try:
            done = migrations.upgrade(engine, office=agency in c.observer_codes(config))
        except DBAPIError as exc:
            print(_cannot_open(agency, url, exc))
            failed += 1
            continue
        except migrations.DatabaseUnrecognised as exc:
            print(f"{agency}: {exc}; nothing done")
            failed += 1
            continue
        finally:
            engine.dispose()
        if not done:
            print(f"{agency}: already at {' + '.join(migrations.heads(agency in c.observer_codes(config)))}")
        for branch, before, after in done:
            print(f"{agency}: {branch} tables {before} → {after}")
    return 1 if failed else 0


def show_current(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    not_current = 0
    for agency in _agencies(args, config):
        url = c.database_url(config, agency)
        office = agency in c.observer_codes(config)
        if _missing_sqlite_file(url):
            print(f"{agency}: no database here ({_missing_sqlite_file(url)})")
            continue
        engine = make_engine(url)
        try:
            found = migrations.current(engine, office=office)
        except DBAPIError as exc:
            print(_cannot_open(agency, url, exc))
            not_current += 1
            continue
        except migrations.DatabaseUnrecognised as exc:
            print(f"{agency}: {exc}")
            not_current += 1
            continue
        finally:
            engine.dispose()
        revisions = " + ".join(state.label() for state in found)
        if all(state.current and state.recorded for state in found):
            print(f"{agency}: {revisions} (current)")
        elif all(state.revision is None for state in found):
            print(f"{agency}: {revisions} (a node creates its tables when it starts)")
        else:
            not_current += 1
            print(f"{agency}: {revisions}, this release needs {' + '.join(migrations.heads(office))}: "
                  f"run `cluebus db upgrade --agency {agency}`")
    return 1 if not_current else 0
