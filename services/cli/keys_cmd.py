"""``cluebus keys``: make, list and revoke agency keys."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from adapters.crypto.keys import KeyDirectory, initialise_key_directory
from adapters.crypto.timestamps import format_timestamp
from services.cli.errors import CommandError
from services.config import KEYS, KEYS_DIR, VALIDITY_DAYS, agency_codes, load_config


def register(commands) -> None:
    keys = commands.add_parser("keys", help="make, list and revoke agency keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="generate signing and sealing keys for every configured agency")
    init.add_argument("--dir", help="key directory (default: KEYS_DIR from the configuration)")
    init.add_argument("--agency", action="append", dest="agencies",
                      help="only this agency (repeatable; default: every configured agency)")
    init.add_argument("--validity-days", type=int, help="validity of the new keys")
    init.add_argument("--force", action="store_true", help="replace an existing key directory")
    init.set_defaults(handler=init_keys)

    listing = sub.add_parser("list", help="show the public keyring")
    listing.add_argument("--dir")
    listing.set_defaults(handler=list_keys)

    revoke = sub.add_parser("revoke", help="mark a key revoked in the public keyring")
    revoke.add_argument("key_id")
    revoke.add_argument("--dir")
    revoke.set_defaults(handler=revoke_key)


def _directory(args, config) -> KeyDirectory:
    return KeyDirectory(args.dir or config[KEYS_DIR])


def init_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    agencies = args.agencies or agency_codes(config)
    unknown = sorted(set(agencies) - set(agency_codes(config)))
    if unknown:
        raise CommandError(f"not configured agencies: {', '.join(unknown)}")
    days = args.validity_days or int(config[KEYS][VALIDITY_DAYS])
    directory, keyring = initialise_key_directory(
        args.dir or config[KEYS_DIR], agencies, validity=timedelta(days=days), force=args.force)
    print(f"wrote {len(agencies)} agencies' keys to {directory.path}")
    print(f"  public keyring: {directory.keyring_path} (share with every agency)")
    print(f"  private keys:   {directory.path / 'private'}/<agency>.key.json (mode 0600; keep secret)")
    _print_keyring(keyring)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _print_keyring(_directory(args, config).load_keyring())
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    directory = _directory(args, config)
    keyring = directory.load_keyring()
    keyring.revoke(args.key_id)
    keyring.save(directory.keyring_path)
    print(f"revoked {args.key_id}; messages signed with it no longer verify")
    return 0


def _print_keyring(keyring) -> None:
    now = datetime.now(timezone.utc)
    for record in sorted(keyring.records.values(), key=lambda r: (r.agency, r.algorithm)):
        if record.revoked:
            state = "revoked"
        elif record.valid_until and now >= record.valid_until:
            state = "expired"
        else:
            state = "valid"
        until = format_timestamp(record.valid_until) if record.valid_until else "-"
        print(f"  {record.key_id:<58} {state:<8} until {until}")
