#!/usr/bin/env bash
# Online backup of Vigil's embedded SQLite database.
#
# Uses `VACUUM INTO`, which copies a consistent snapshot inside one read transaction: safe while
# the server runs, includes everything committed to the -wal file, never blocks the server's
# writer, and never modifies the source. The copy is integrity-checked before it is kept.
# The database also holds the token-signing and VAPID keys: protect the backups accordingly.
set -euo pipefail

readonly PROG=${0##*/}
KEEP=${KEEP:-14}
PREFIX=${PREFIX:-vigil}

usage() {
    cat <<EOF
Usage: $PROG [-k KEEP] [-p PREFIX] DATABASE DEST_DIR

Back up a Vigil SQLite database while the server runs.

  DATABASE   path to the database file, or a sqlite:// URL as in VIGIL_DATABASE_URL
             (e.g. /var/lib/vigil/vigil.db or sqlite:///var/lib/vigil/vigil.db)
  DEST_DIR   directory for the backups (created if missing)

Options:
  -k KEEP    keep the newest KEEP backups with this prefix, delete older ones (default $KEEP;
             env KEEP)
  -p PREFIX  file name prefix (default $PREFIX; env PREFIX); files are PREFIX-YYYYmmddTHHMMSSZ.db
  -h         show this help

Run it as the service user (sudo -u vigil ...) or root. Example cron line (daily, 03:15):
  15 3 * * *  vigil  /usr/local/lib/vigil/backup-sqlite.sh /var/lib/vigil/vigil.db /var/backups/vigil

Exit status: 0 success, 1 failure, 2 usage error.
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s\n' "$PROG" "$*" >&2; printf "Try '%s -h'.\n" "$PROG" >&2; exit 2; }
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

while getopts ':k:p:h' opt; do
    case $opt in
        k) KEEP=$OPTARG ;;
        p) PREFIX=$OPTARG ;;
        h) usage; exit 0 ;;
        :) usage_error "option -$OPTARG needs a value" ;;
        *) usage_error "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 2 ]] || usage_error "expected DATABASE and DEST_DIR, got $# argument(s)"

[[ $KEEP =~ ^[1-9][0-9]*$ ]] || usage_error "KEEP must be a whole number >= 1, got '$KEEP'"
[[ $PREFIX =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "PREFIX may contain only letters, digits, '.', '_' and '-'"

db=$1
dest=$2
# Accept the server's URL form: sqlite:///abs/path, sqlite://rel/path, sqlite:path, with ?options.
case $db in
    sqlite://*) db=${db#sqlite://} ;;
    sqlite:*) db=${db#sqlite:} ;;
    postgres:* | postgresql:*) usage_error "that is a PostgreSQL URL: use backup-postgres.sh" ;;
esac
db=${db%%\?*}
[[ -n $db ]] || usage_error "empty database path"

command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 not found (Debian/Ubuntu: apt-get install sqlite3)"
[[ -e $db ]] || die "database '$db' does not exist"
[[ -f $db ]] || die "database '$db' is not a regular file"
[[ -r $db ]] || die "database '$db' is not readable by $(id -un)"

umask 077
mkdir -p -- "$dest" || die "cannot create backup directory '$dest'"
[[ -d $dest && -w $dest ]] || die "backup directory '$dest' is not a writable directory"

# One backup at a time per destination.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest/.$PREFIX-backup.lock"
    flock -n 9 || die "another backup into '$dest' is running"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$dest/$PREFIX-$stamp.db"
partial="$dest/.$PREFIX-$stamp.db.partial"
[[ ! -e $final ]] || die "'$final' already exists (one backup per second at most)"
rm -f -- "$partial"
trap 'rm -f -- "$partial"' EXIT

# Single quotes in the target path are doubled for the SQL string literal.
sql_target=${partial//\'/\'\'}
log "backing up '$db' to '$final'"
# -readonly: the source is never written; the WAL is still read, so the snapshot is current.
if ! err=$(sqlite3 -bail -readonly "$db" "PRAGMA busy_timeout = 30000; VACUUM INTO '$sql_target';" 2>&1 >/dev/null); then
    die "VACUUM INTO failed: ${err:-unknown error}"
fi
[[ -s $partial ]] || die "the backup file is empty"

check=$(sqlite3 -bail -readonly "$partial" 'PRAGMA integrity_check;' 2>&1) \
    || die "cannot check the backup: $check"
[[ $check == ok ]] || die "the backup fails its integrity check: $check"

mv -f -- "$partial" "$final"
trap - EXIT
sync -- "$final" 2>/dev/null || true
log "ok: $final ($(wc -c <"$final") bytes)"

# Retention: names sort by time, newest first; keep $KEEP.
mapfile -t old < <(find "$dest" -maxdepth 1 -type f -name "$PREFIX-*.db" -printf '%f\n' \
    | grep -E "^$PREFIX-[0-9]{8}T[0-9]{6}Z\.db\$" | sort -r | tail -n +"$((KEEP + 1))")
for f in "${old[@]}"; do
    rm -f -- "${dest:?}/$f"
    log "removed old backup $f"
done
