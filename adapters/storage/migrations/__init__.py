"""Schema migrations (Alembic) of a node's database, and the check that it is current.

One script directory (this package: env.py, versions/), one version table
(``alembic_version``), two independent branches:

- ``node`` (node_0001, node_0002, ...): the tables of every node (tables.Base.metadata);
- ``office`` (office_0001, ...): the joint office's own tables (office_tables.OfficeBase),
  only in an observer agency's database, which carries both branches.

A node's database is "current" when the version table holds the head of each branch it
carries (``heads(office)``). Revision 1 of each branch is the schema round 1 shipped (made by
``create_all`` then, so such a database has no version table: ``upgrade`` recognises it and
records revision 1 before upgrading; see ``_unrecorded``).

Opening a database (``ensure_current``, from services/bootstrap.open_store):
- a branch whose tables are all absent (a new database) is created at its head, silently:
  the demo and tests start on empty databases;
- a database already at the head's schema but with nothing recorded (made by ``create_all``
  of this release) has the head recorded;
- anything else behind raises DatabaseBehind, whose one line names the command to run
  (``cluebus db upgrade --agency X``): tables holding data are never migrated silently.
Both run in one transaction, under a lock (SQLite's BEGIN IMMEDIATE, a PostgreSQL advisory
lock), so two processes opening the same new database do not both create it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine

from ..office_tables import OfficeBase
from ..tables import Base

NODE, OFFICE = "node", "office"
HERE = Path(__file__).resolve().parent
# Round 1's node tables (revision node_0001): what such a database holds without a version table.
ROUND1_NODE_TABLES = frozenset({"messages", "outbox", "inbox", "quarantine", "referrals", "audit_log", "audit_head"})
_PG_LOCK_KEY = 0x636C7565  # "clue": one migrating process at a time per database


class DatabaseBehind(Exception):
    """The database is not at this release's schema; says so in one line with the fix."""

    def __init__(self, name: str, current: str, needed: str, *, why: str = ""):
        self.name, self.current, self.needed, self.why = name, current, needed, why
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"{self.name}: database at revision {self.current}, this release needs {self.needed}"
                f"{self.why}: run `cluebus db upgrade --agency {self.name}`")


class DatabaseUnrecognised(Exception):
    """Tables that are neither a known revision nor recorded: nothing is done to them."""


def branches(office: bool) -> tuple[str, ...]:
    return (NODE, OFFICE) if office else (NODE,)


def target_metadata(office: bool) -> list[MetaData]:
    return [Base.metadata, OfficeBase.metadata] if office else [Base.metadata]


def _metadata(branch: str) -> MetaData:
    return OfficeBase.metadata if branch == OFFICE else Base.metadata


def include_name(metadata: MetaData | Iterable[MetaData]):
    """Alembic's ``include_name`` hook: compare only the tables of ``metadata``."""
    names = {name for md in ([metadata] if isinstance(metadata, MetaData) else metadata) for name in md.tables}

    def include(name, type_, parent_names):
        return name in names if type_ == "table" else True
    return include


def alembic_config(connection: Connection | None = None, *, office: bool = False) -> Config:
    """An Alembic configuration in code (no alembic.ini needed), on ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["office"] = office
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head(branch: str) -> str:
    return script().get_revision(f"{branch}@head").revision


def heads(office: bool) -> tuple[str, ...]:
    """The revisions this release needs, one per branch."""
    return tuple(head(branch) for branch in branches(office))


def _branch_of(revision: str) -> str | None:
    try:
        found = script().get_revision(revision)
    except Exception:  # a revision unknown to this release
        return None
    for branch in (NODE, OFFICE):
        if branch in found.branch_labels:
            return branch
    return None


def schema_diff(connection: Connection, metadata: MetaData | list[MetaData]) -> list:
    """Alembic's autogenerate differences between the database and ``metadata`` ([] if equal),
    ignoring tables that are not in ``metadata``."""
    context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                           "include_name": include_name(metadata)})
    return compare_metadata(context, metadata)


@dataclass(frozen=True)
class BranchState:
    branch: str
    revision: str | None   # the recorded revision, else what the tables are (None: no tables)
    recorded: bool

    @property
    def current(self) -> bool:
        return self.revision == head(self.branch)

    def label(self) -> str:
        if self.revision is None:
            return "none (no tables)"
        return self.revision if self.recorded else f"{self.revision} (not recorded: made before migrations)"


def states(connection: Connection, office: bool) -> list[BranchState]:
    """Where each branch the database should carry stands."""
    recorded: dict[str, str] = {}
    unknown = []
    for revision in MigrationContext.configure(connection).get_current_heads():
        branch = _branch_of(revision)
        if branch is None:
            unknown.append(revision)
        else:
            recorded[branch] = revision
    if unknown:
        raise DatabaseUnrecognised(f"database at revision {', '.join(unknown)}, unknown to this release "
                                   f"(made by a newer one?)")
    found = []
    for branch in branches(office):
        if branch in recorded:
            found.append(BranchState(branch, recorded[branch], True))
        else:
            found.append(BranchState(branch, _unrecorded(connection, branch), False))
    return found


def _unrecorded(connection: Connection, branch: str) -> str | None:
    """What a branch's tables are when no revision is recorded for it: None (no tables), the
    head (the models' schema exactly), or round 1's revision 1 (made by round 1's create_all)."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    metadata = _metadata(branch)
    present = tables & set(metadata.tables)
    if not present:
        return None
    if not schema_diff(connection, metadata):
        return head(branch)
    if branch == NODE and present == ROUND1_NODE_TABLES:
        return "node_0001"
    if (branch == OFFICE and present == set(metadata.tables)
            and "calendar_missing" not in {c["name"] for c in inspector.get_columns("deadline_steps")}):
        return "office_0001"
    raise DatabaseUnrecognised(f"{branch} tables ({', '.join(sorted(present))}) match no revision of this "
                               f"release and none is recorded")


def _lock(connection: Connection) -> None:
    """Serialise migrating processes (SQLite: the transaction already began IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _migrate(connection: Connection, found: list[BranchState], office: bool) -> list[tuple[str, str, str]]:
    """Record what unrecorded tables are, then upgrade each branch to its head."""
    config = alembic_config(connection, office=office)
    done = []
    for state in found:
        if state.current and state.recorded:
            continue
        if state.revision is not None and not state.recorded:
            command.stamp(config, state.revision)
        if not state.current:
            command.upgrade(config, f"{state.branch}@head")
        done.append((state.branch, state.label(), head(state.branch)))
    return done


def _behind(name: str, found: list[BranchState], office: bool) -> DatabaseBehind:
    return DatabaseBehind(name, " + ".join(s.label() for s in found), " + ".join(heads(office)))


def ensure_current(engine: Engine, name: str, *, office: bool = False) -> list[tuple[str, str, str]]:
    """Check the database at ``engine`` (of agency ``name``) is at this release's heads; a new
    (empty) branch is created, an unrecorded one at the head recorded. Raises DatabaseBehind
    otherwise, DatabaseUnrecognised for tables of no known revision. Returns what it did."""
    try:
        with engine.begin() as connection:
            _lock(connection)
            found = states(connection, office)
            if all(s.current and s.recorded for s in found):
                return []
            if any(not s.current and s.revision is not None for s in found):
                raise _behind(name, found, office)
            return _migrate(connection, found, office)
    except DatabaseUnrecognised as exc:
        raise DatabaseUnrecognised(f"{name}: {exc}") from None


def upgrade(engine: Engine, *, office: bool = False) -> list[tuple[str, str, str]]:
    """Bring the database to this release's heads, whatever revision it is at (a database
    round 1 made, with no version table, included). Returns (branch, from, to) per change."""
    with engine.begin() as connection:
        _lock(connection)
        return _migrate(connection, states(connection, office), office)


def current(engine: Engine, *, office: bool = False) -> list[BranchState]:
    with engine.connect() as connection:
        return states(connection, office)
