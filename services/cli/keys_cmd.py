"""``cluebus keys``: an agency's own keys, and the bus operator's signed keyring.

On one machine (development, the demo) ``keys init`` makes everything. In a deployment each
agency runs ``keys init --agency X`` (and later ``keys rotate --agency X``) on its own machine
and hands the request file to the bus operator, who runs ``keys publish --add FILE``: the
keyring's next version, signed with the trust anchor, goes to every node over the bus.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

from adapters.crypto.keys import KeyDirectory, initialise_key_directory
from adapters.crypto.timestamps import parse_timestamp
from adapters.crypto.trust import KeyRequest
from adapters.transport.credentials import CredentialsError
from services import key_management as km
from services import settings
from services.cli.errors import CommandError
from services.cli.times import time_format
from services.config import KEYS, VALIDITY_DAYS, agency_codes, load_config


def register(commands) -> None:
    keys = commands.add_parser("keys", help="agency keys and the bus operator's signed keyring")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="make keys: with --agency, that agency's own pair and its request for "
                                       "the bus operator; without, everything on one machine (trust anchor, "
                                       "every agency, signed keyring)")
    init.add_argument("--dir", help="key directory (default: KEYS_DIR from the configuration)")
    init.add_argument("--agency", action="append", dest="agencies",
                      help="only this agency's own keys (repeatable); the keyring is not touched")
    init.add_argument("--validity-days", type=int, help="validity of the new keys (one machine only)")
    init.add_argument("--force", action="store_true", help="replace existing keys")
    init.set_defaults(handler=init_keys)

    rotate = sub.add_parser("rotate", help="a new key pair for an agency, replacing its current one after "
                                           "an overlap in which both verify")
    rotate.add_argument("--agency", required=True)
    rotate.add_argument("--dir")
    rotate.add_argument("--publish", action="store_true",
                        help="also publish the keyring at once (where the bus operator's anchor key is in "
                             "the same directory, as on one machine)")
    rotate.set_defaults(handler=rotate_keys)

    publish = sub.add_parser("publish", help="(bus operator) sign the keyring's next version and send it to "
                                             "every node over the bus; with nothing to add or revoke, "
                                             "send the held version again")
    publish.add_argument("--dir")
    publish.add_argument("--add", action="append", default=[], metavar="REQUEST",
                         help="an agency's key request file (repeatable)")
    publish.add_argument("--revoke", action="append", default=[], metavar="KEY_ID",
                         help="revoke this key (repeatable)")
    publish.add_argument("--revoked-at", help="the revocation takes effect from this time "
                                              "(ISO 8601 UTC; default now); messages sent before still verify")
    publish.add_argument("--no-send", action="store_true", help="sign and keep it, do not publish it")
    publish.set_defaults(handler=publish_keys)

    listing = sub.add_parser("list", help="show the keyring, its version and the trust anchor")
    listing.add_argument("--dir")
    listing.set_defaults(handler=list_keys)

    revoke = sub.add_parser("revoke", help="revoke a key (with a trust anchor: `keys publish --revoke`)")
    revoke.add_argument("key_id")
    revoke.add_argument("--dir")
    revoke.add_argument("--revoked-at")
    revoke.add_argument("--no-send", action="store_true")
    revoke.set_defaults(handler=revoke_key)


def _directory(args, config) -> KeyDirectory:
    return KeyDirectory(Path(args.dir).expanduser()) if args.dir else settings.key_directory(config)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _check_agencies(config, agencies) -> None:
    unknown = sorted(set(agencies) - set(agency_codes(config)))
    if unknown:
        raise CommandError(f"not configured agencies: {', '.join(unknown)}")


def init_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    directory = _directory(args, config)
    if args.agencies:
        _check_agencies(config, args.agencies)
        for agency in args.agencies:
            request = km.make_agency_keys(directory, agency, _now(), force=args.force)
            _print_request(directory, request)
        return 0
    days = args.validity_days or int(config[KEYS][VALIDITY_DAYS])
    agencies = agency_codes(config)
    directory, keyring = initialise_key_directory(directory.path, agencies, validity=timedelta(days=days),
                                                  force=args.force)
    print(f"wrote {len(agencies)} agencies' keys and a trust anchor to {directory.path}")
    print(f"  trust anchor:   {directory.trust_anchor_path} (give to every agency once)")
    print(f"  signed keyring: {directory.signed_keyring_path} (version 1; later versions come over the bus)")
    print(f"  private keys:   {directory.path / 'private'}/<agency>.key.json (mode 0600; keep secret)")
    print(f"  anchor key:     {directory.anchor_private_path} (mode 0600; the bus operator's only)")
    _print_keyring(directory, time_format(args, config))
    return 0


def rotate_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _check_agencies(config, [args.agency])
    directory = _directory(args, config)
    request = km.rotate_agency_keys(directory, args.agency, _now())
    print(f"{args.agency}: new keys made; the current ones stay in use until the new ones are valid")
    _print_request(directory, request, publish=not args.publish)
    if args.publish:
        return _publish(config, directory, km.KeyringChange(requests=[request]), send=True,
                        when=time_format(args, config))
    return 0


def publish_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    directory = _directory(args, config)
    change = km.KeyringChange()
    for path in args.add:
        change.requests.append(_load_request(path))
    at = _revoked_at(args.revoked_at)
    change.revocations = [(key_id, at) for key_id in args.revoke]
    return _publish(config, directory, change, send=not args.no_send, when=time_format(args, config))


def revoke_key(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    directory = _directory(args, config)
    at = _revoked_at(args.revoked_at)
    if directory.has_trust_anchor():
        return _publish(config, directory, km.KeyringChange(revocations=[(args.key_id, at)]),
                        send=not args.no_send, when=time_format(args, config))
    # A keyring of round 1 (no trust anchor): the file itself, copied to every node by hand.
    keyring = directory.load_keyring()
    keyring.revoke(args.key_id, at)
    keyring.save(directory.keyring_path)
    print(f"revoked {args.key_id}; messages signed with it no longer verify")
    return 0


def _revoked_at(text: str | None) -> datetime:
    if not text:
        return _now()
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise CommandError(f"--revoked-at: {exc}") from None


def _load_request(path: str) -> KeyRequest:
    import json
    try:
        return KeyRequest.load(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the key request {path}: {exc}") from None


def _publish(config, directory: KeyDirectory, change: km.KeyringChange, *, send: bool, when) -> int:
    now = _now()
    try:
        signed, failures = km.publish_keyring(config, directory, change, now, distribute=send)
    except CredentialsError as exc:
        raise CommandError(f"{exc}; the signed keyring was not published") from None
    for request in change.requests:
        record = next(r for r in signed.keyring.records.values() if r.key_id == request.signing_record.key_id)
        print(f"  added {request.agency}'s keys, valid from {when(record.valid_from)}"
              + (f" (replacing {request.replaces}, which ends {_end_of(signed, request.replaces, when)})"
                 if request.replaces else ""))
    for key_id, at in change.revocations:
        print(f"  revoked {key_id} from {when(at)}")
    print(f"signed keyring version {signed.version} written to {directory.signed_keyring_path}")
    if not send:
        print("  not published (--no-send): run `cluebus keys publish` to send it")
        return 0
    if failures:
        for agency, failure in sorted(failures.items()):
            print(f"  not taken for {agency}: [{failure.rule}] {failure.detail}")
        print("publish it again with `cluebus keys publish` (a node takes a version it holds as a duplicate)")
        return 1
    print(f"published to {len(km.c.agency_codes(config))} agencies over the bus")
    return 0


def _end_of(signed, key_id: str, when) -> str:
    until = signed.keyring.records[key_id].valid_until
    return when(until) if until else "never"


def _print_request(directory: KeyDirectory, request: KeyRequest, *, publish: bool = True) -> None:
    path = directory.request_path(request.agency)
    print(f"{request.agency}: private keys in {directory.private_path(request.agency)} (mode 0600; keep secret)")
    print(f"  key request: {path}")
    print(f"  signing key {request.signing_record.key_id}")
    if publish:
        print(f"  hand the request to the bus operator, who runs `cluebus keys publish --add {path.name}`")


def list_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _print_keyring(_directory(args, config), time_format(args, config))
    return 0


def _print_keyring(directory: KeyDirectory, when) -> None:
    signed = directory.load_signed_keyring()
    if signed is not None:
        anchor = directory.load_trust_anchor()
        print(f"  keyring version {signed.version}, issued {when(signed.issued_at)}, "
              f"signed by the trust anchor {anchor.key_id} (fingerprint {anchor.fingerprint})")
        keyring = signed.keyring
    else:
        keyring = directory.load_keyring()
        print("  keyring without a trust anchor (round 1): copied to every node by hand")
    now = datetime.now(timezone.utc)
    for record in sorted(keyring.records.values(), key=lambda r: (r.agency, r.algorithm, r.valid_from)):
        if record.revoked_for(now):
            state = "revoked"
        elif record.valid_until and now >= record.valid_until:
            state = "expired"
        elif now < record.valid_from:
            state = "pending"
        else:
            state = "valid"
        until = when(record.valid_until) if record.valid_until else "-"
        print(f"  {record.key_id:<58} {state:<8} until {until}")
