#!/usr/bin/env bash
# PostgreSQL init script (run once, by the postgres image, on an empty data directory): one
# database per configured agency, cluebus_<agency>, owned by the nodes' role `cluebus`, whose
# password is the compose secret database-password. Agencies share no database.
#
# The agency list is read from the cluebus configuration mounted at $CONFIG_YAML (default
# /etc/cluebus/cluebus.yaml: services/cluebus.yaml), the keys of its top-level AGENCIES mapping.
# `10-cluebus-databases.sh --list [FILE]` only prints that list (used by tests/unit/test_docker.py).
set -eu

CONFIG_YAML=${CONFIG_YAML:-/etc/cluebus/cluebus.yaml}
PASSWORD_FILE=${PASSWORD_FILE:-/run/secrets/database-password}
ROLE=${DB_ROLE:-cluebus}

agencies() {
  # The two-space-indented keys under "AGENCIES:", up to the next top-level key.
  awk '
    /^AGENCIES:[[:space:]]*$/ { inside = 1; next }
    inside && /^[^[:space:]#]/ { inside = 0 }
    inside && /^  [A-Za-z_][A-Za-z0-9_]*:/ { name = $1; sub(/:$/, "", name); print name }
  ' "$1"
}

if [ "${1:-}" = --list ]; then
  agencies "${2:-$CONFIG_YAML}"
  exit 0
fi

[ -f "$CONFIG_YAML" ] || { echo "cluebus init: no configuration at $CONFIG_YAML" >&2; exit 1; }
[ -r "$PASSWORD_FILE" ] || { echo "cluebus init: no database password at $PASSWORD_FILE" >&2; exit 1; }
list=$(agencies "$CONFIG_YAML")
[ -n "$list" ] || { echo "cluebus init: $CONFIG_YAML lists no AGENCIES" >&2; exit 1; }

psql=(psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}")
password=$(tr -d '\n' < "$PASSWORD_FILE")
"${psql[@]}" -v role="$ROLE" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
SQL
for agency in $list; do
  "${psql[@]}" -v role="$ROLE" -v db="cluebus_$agency" <<'SQL'
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
  echo "cluebus init: database cluebus_$agency"
done
