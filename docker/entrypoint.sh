#!/usr/bin/env bash
# The node image's entrypoint: `docker run IMAGE run --agency court` runs `cluebus run --agency court`.
#
# Before it execs the cluebus command it
#   1. reads the configuration as cluebus reads it (services/cluebus.yaml, CLUEBUS_* variables,
#      $CLUEBUS_CONFIG), so it checks exactly the paths and addresses the node will use;
#   2. for `run --agency X`: checks the mounted secrets: X's private key
#      (KEYS_DIR/private/X.key.json) and broker credentials (CREDENTIALS_DIR/X.json) exist, are
#      files and readable by no one but their owner (0600 or 0400); with the bus operator's
#      trust anchor (KEYS_DIR/trust-anchor.json), puts the first signed keyring (a secret,
#      KEYS_DIR/keyring.signed.json) into KEYRING_DIR unless the node keeps one there already
#      (later versions come over the bus); else the public keyring (keyring.json) must exist;
#      for an observer (the office), its accounts file if present;
#   3. waits for the broker (every address of BROKER.BUS_URI) and the database (a
#      PostgreSQL DATABASE_URL; nothing to wait for with SQLite) to accept TCP connections,
#      up to $WAIT_SECONDS (default 60);
#   4. fills in the database password: when the file /run/secrets/database-password exists
#      (a compose secret) and DATABASE_URL names a user without a password, the password is
#      added to CLUEBUS_DATABASE_URL in this process's environment only (never in the image,
#      the compose file or `docker inspect`);
#   5. for `run --agency X`: brings X's database to this release's schema with
#      `cluebus db upgrade --agency X` (a new deployment's tables are made, a database of an
#      older release is migrated), since the node itself refuses a database behind it and
#      never upgrades one silently.
# Any failure: one line on stderr starting with "cluebus-entrypoint:", exit status 1.
set -eu

PYTHON=${PYTHON:-python3}
WAIT_SECONDS=${WAIT_SECONDS:-60}
DATABASE_PASSWORD_FILE=${DATABASE_PASSWORD_FILE:-/run/secrets/database-password}

fail() {
  echo "cluebus-entrypoint: $*" >&2
  exit 1
}

# The command: `cluebus ...`, or cluebus's arguments alone.
if [ "$#" -gt 0 ] && [ "$1" = cluebus ]; then
  shift
fi
[ "$#" -gt 0 ] || set -- --help
CLUEBUS=${CLUEBUS:-cluebus}
command -v "$CLUEBUS" >/dev/null 2>&1 || fail "no cluebus command on PATH ($CLUEBUS)"

# The agency of `run --agency X` (also --agency=X), and --config if given.
agency=""
config_file=""
subcommand=""
previous=""
for arg in "$@"; do
  case "$previous" in
    --agency) agency=$arg ;;
    --config) config_file=$arg ;;
  esac
  case "$arg" in
    --agency=*) agency=${arg#--agency=} ;;
    --config=*) config_file=${arg#--config=} ;;
    -*) ;;
    *) if [ -z "$subcommand" ] && [ "$previous" != --config ]; then subcommand=$arg; fi ;;
  esac
  previous=$arg
done

# What the configuration says, one "NAME=value" line each (values never hold a newline).
settings=$(CONFIG_FILE=$config_file AGENCY=$agency "$PYTHON" - <<'EOF'
import os, sys
from urllib.parse import urlsplit
try:
    from services import config as c
    from adapters.transport import uris
    config = c.load_config(os.environ.get("CONFIG_FILE") or None)
except Exception as exc:  # a one-line reason, not a traceback
    print(f"error=the configuration does not load: {exc}".replace("\n", " "))
    sys.exit(0)
agency = os.environ.get("AGENCY") or ""
if agency and agency not in c.agency_codes(config):
    print(f"error={agency!r} is not a configured agency ({', '.join(c.agency_codes(config))})")
    sys.exit(0)
for address in uris.addresses(config[c.BROKER][c.BUS_URI]):
    split = urlsplit(address)
    print(f"broker={split.hostname or '127.0.0.1'}:{split.port or 5672}")
url = c.database_url(config, agency or "x")
split = urlsplit(url)
if split.scheme.startswith("postgresql"):
    print(f"database={split.hostname or '127.0.0.1'}:{split.port or 5432}")
    print(f"database_has_password={'yes' if split.password is not None else 'no'}")
print(f"keys_dir={config[c.KEYS_DIR]}")
print(f"keyring_dir={config.get(c.KEYRING_DIR) or config[c.KEYS_DIR]}")
print(f"credentials_dir={config[c.BROKER][c.CREDENTIALS_DIR]}")
print(f"observer={'yes' if agency in c.observer_codes(config) else 'no'}")
print(f"accounts_file={config[c.OFFICE][c.ACCOUNTS_FILE]}")
EOF
) || fail "cannot read the configuration with $PYTHON"

setting() {
  printf '%s\n' "$settings" | sed -n "s/^$1=//p"
}
error=$(setting error)
[ -z "$error" ] || fail "$error"

# A secret file: present, a regular file, readable, and no permission for group or others.
check_secret() {
  path=$1
  what=$2
  [ -e "$path" ] || fail "no $what at $path (mount it as a secret)"
  [ -f "$path" ] || fail "$what $path is not a file"
  [ -r "$path" ] || fail "$what $path is not readable by uid $(id -u) (chown it to the node's user)"
  mode=$(stat -L -c %a "$path")
  case "$mode" in
    600 | 400) ;;
    *) fail "$what $path has mode $mode: it must be 600 (chmod 600 it)" ;;
  esac
}

if [ "$subcommand" = run ] && [ -n "$agency" ]; then
  keys_dir=$(setting keys_dir)
  credentials_dir=$(setting credentials_dir)
  check_secret "$keys_dir/private/$agency.key.json" "private key of $agency"
  check_secret "$credentials_dir/$agency.json" "broker credentials of $agency"
  keyring_dir=$(setting keyring_dir)
  if [ -f "$keys_dir/trust-anchor.json" ]; then
    # The first signed keyring comes as a secret; the node keeps the later versions it takes
    # from the bus in KEYRING_DIR, which must be writable (a volume).
    if [ ! -f "$keyring_dir/keyring.signed.json" ]; then
      [ -f "$keys_dir/keyring.signed.json" ] || fail "no signed keyring at $keys_dir/keyring.signed.json (mount it)"
      mkdir -p "$keyring_dir" && cp "$keys_dir/keyring.signed.json" "$keyring_dir/keyring.signed.json" \
        || fail "cannot copy the signed keyring into KEYRING_DIR $keyring_dir (it must be writable)"
    fi
  else
    [ -f "$keyring_dir/keyring.json" ] || fail "no public keyring at $keyring_dir/keyring.json (mount it)"
  fi
  if [ "$(setting observer)" = yes ]; then
    accounts_file=$(setting accounts_file)
    if [ -e "$accounts_file" ]; then
      check_secret "$accounts_file" "office accounts file"
    fi
  fi
fi

# Wait until host:port accepts a TCP connection.
wait_for() {
  what=$1
  address=$2
  host=${address%:*}
  port=${address##*:}
  deadline=$(($(date +%s) + WAIT_SECONDS))
  until timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "the $what at $host:$port did not accept connections within ${WAIT_SECONDS}s"
    fi
    sleep 1
  done
}

for address in $(setting broker); do
  wait_for broker "$address"
done
database=$(setting database)
if [ -n "$database" ]; then
  wait_for database "$database"
  if [ "$(setting database_has_password)" = no ] && [ -f "$DATABASE_PASSWORD_FILE" ]; then
    check_secret "$DATABASE_PASSWORD_FILE" "database password"
    CLUEBUS_DATABASE_URL=$(CONFIG_FILE=$config_file PASSWORD_FILE=$DATABASE_PASSWORD_FILE "$PYTHON" - <<'EOF'
import os
from urllib.parse import quote
from services import config as c
url = str(c.load_config(os.environ.get("CONFIG_FILE") or None)[c.DATABASE_URL])
password = open(os.environ["PASSWORD_FILE"], encoding="utf-8").read().strip()
scheme, rest = url.split("://", 1)
user, host = rest.split("@", 1)
print(f"{scheme}://{user}:{quote(password, safe='')}@{host}")
EOF
    ) || fail "cannot add the database password from $DATABASE_PASSWORD_FILE to DATABASE_URL"
    export CLUEBUS_DATABASE_URL
  fi
fi

if [ "$subcommand" = run ] && [ -n "$agency" ]; then
  if ! upgraded=$("$CLUEBUS" ${config_file:+--config "$config_file"} db upgrade --agency "$agency" 2>&1); then
    fail "the database of $agency was not upgraded: $(printf '%s' "$upgraded" | tr '\n' ' ' | sed 's/ *$//')"
  fi
  printf '%s\n' "$upgraded" | sed 's/^/cluebus-entrypoint: database /'
fi

exec "$CLUEBUS" "$@"
