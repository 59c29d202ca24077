"""``cluebus evidence export`` and ``cluebus evidence verify``: the evidence bundle of a
referral (docs/evidence.md). Export reads the agency's own database; verify needs nothing but
the files (no database, no broker, no configuration)."""

from __future__ import annotations

import sys
from pathlib import Path

from adapters.crypto.exceptions import CryptoError
from adapters.storage.exceptions import AuditChainBroken
from services import config as c
from services.bootstrap import offline_context
from services.domain.exceptions import DomainError
from services.evidence.export import bundle_text, export_bundle
from services.evidence.verify import EvidenceFailure, timeline, verify_bundles

from .errors import CommandError
from .times import time_format


def register(commands) -> None:
    evidence = commands.add_parser("evidence", help="evidence bundles of a referral: export, verify offline")
    actions = evidence.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)

    export = actions.add_parser("export", help="write the signed evidence bundle of a referral from a node's database")
    export.add_argument("referral_id")
    export.add_argument("--as", dest="agency", required=True, help="the agency whose node database is exported")
    export.add_argument("--out", required=True, help="the bundle file to write (JSON)")
    export.set_defaults(handler=export_evidence)

    verify = actions.add_parser("verify", help="verify bundles offline and print the referral's timeline "
                                              "(times in OFFICE.TIMEZONE, Asia/Shanghai by default; or --utc)")
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.set_defaults(handler=verify_evidence)


def export_evidence(args) -> int:
    config = c.load_config(args.config)
    if args.agency not in c.agency_codes(config):
        raise CommandError(f"{args.agency!r} is not a configured agency ({', '.join(c.agency_codes(config))})")
    try:
        ctx = offline_context(config, args.agency)
    except CryptoError as exc:
        raise CommandError(f"[{exc.rule}] {exc.detail}") from None
    try:
        bundle = export_bundle(ctx, args.referral_id)
    except DomainError as exc:
        raise CommandError(str(exc)) from None
    except AuditChainBroken as exc:
        raise CommandError(f"[{exc.rule}] {exc}; no bundle written") from None
    finally:
        ctx.store.dispose()
    try:
        Path(args.out).write_text(bundle_text(bundle), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc}") from None
    manifest = bundle["manifest"]
    print(f"{args.agency}: referral {args.referral_id}: {len(bundle['messages'])} message(s), "
          f"{len(bundle['audit']['entries'])} audit entr{'y' if len(bundle['audit']['entries']) == 1 else 'ies'} "
          f"(chain head {bundle['audit']['head']['seq']}), bundle {manifest['bundle_id']} "
          f"signed with {manifest['signer_key_id']} → {args.out}")
    return 0


def verify_evidence(args) -> int:
    files = []
    for name in args.files:
        try:
            files.append((name, Path(name).read_bytes()))
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc}") from None
    try:
        bundles = verify_bundles(files)
    except EvidenceFailure as failure:
        print(f"cluebus: evidence FAILED: {failure}", file=sys.stderr)
        return 1
    when = time_format(args, _config_if_any(args))
    print(f"referral {bundles[0].referral_id}")
    for step in timeline(bundles):
        held = ", ".join(f"{agency} ({direction})" for agency, direction in step["held_by"].items())
        status = f"  {step['receipt_status']}" if step["receipt_status"] else ""
        answered = f"  receipt: {', '.join(str(a) for a in step['answered'])}" if step["answered"] else ""
        print(f"  {when(step['sent_at'])}  {step['sender']:>16} → {step['recipient']:<16} {step['kind']:<28}"
              f"{status}{answered}  sha256 {step['sha256'][:16]}…  held by {held}")
    for bundle in bundles:
        print(f"  {bundle.source}: exported by {bundle.exporter} at {when(bundle.manifest['exported_at'])}, manifest "
              f"signature ok, {len(bundle.messages)} message signature(s) ok, {len(bundle.entries)} audit "
              f"entr{'y' if len(bundle.entries) == 1 else 'ies'} linked to chain head {bundle.head['seq']}")
        for note in bundle.notes:
            print(f"    note: {note}")
    agreed = " and agree" if len(bundles) > 1 else ""
    print(f"evidence verified: {len(bundles)} bundle(s){agreed}")
    return 0


def _config_if_any(args) -> dict | None:
    """Only for the time zone: verifying needs no configuration, so one that does not load
    (or is not there) leaves the default zone rather than failing the verification."""
    try:
        return c.load_config(args.config)
    except (c.ConfigError, OSError):
        return None
