#!/usr/bin/env bash
# Online backup of Vigil's PostgreSQL database with pg_dump's custom format (-Fc): compressed,
# consistent (one snapshot), restorable selectively with pg_restore. The archive is checked with
# `pg_restore --list` before it is kept. The database also holds the token-signing and VAPID
# keys: protect the backups accordingly.
set -euo pipefail

readonly PROG=${0##*/}
KEEP=${KEEP:-14}
PREFIX=${PREFIX:-vigil}

usage() {
    cat <<EOF
Usage: $PROG [-k KEEP] [-p PREFIX] [-d DATABASE_URL] DEST_DIR

Back up a Vigil PostgreSQL database while the server runs.

  DEST_DIR         directory for the backups (created if missing)

Options:
  -d DATABASE_URL  postgres://user[:password]@host[:port]/dbname[?sslmode=...]
                   Default: \$VIGIL_DATABASE_URL if set, otherwise libpq's own PGHOST, PGPORT,
                   PGUSER, PGDATABASE, PGPASSWORD / ~/.pgpass. A password in the URL is moved
                   to PGPASSWORD so that it does not appear in pg_dump's command line (ps).
                   Prefer the environment to -d: -d itself is visible in ps.
  -k KEEP          keep the newest KEEP backups with this prefix, delete older ones
                   (default $KEEP; env KEEP)
  -p PREFIX        file name prefix (default $PREFIX; env PREFIX); files are
                   PREFIX-YYYYmmddTHHMMSSZ.dump
  -h               show this help

pg_dump must be at least as new as the server (PostgreSQL 15 → pg_dump 15 or later).
Example (cron, daily at 03:15, with the secrets file the systemd unit uses):
  15 3 * * *  root  set -a; . /etc/vigil/vigil.env; /usr/local/lib/vigil/backup-postgres.sh /var/backups/vigil

Exit status: 0 success, 1 failure, 2 usage error.
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s\n' "$PROG" "$*" >&2; printf "Try '%s -h'.\n" "$PROG" >&2; exit 2; }
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

url=${VIGIL_DATABASE_URL:-}
while getopts ':k:p:d:h' opt; do
    case $opt in
        k) KEEP=$OPTARG ;;
        p) PREFIX=$OPTARG ;;
        d) url=$OPTARG ;;
        h) usage; exit 0 ;;
        :) usage_error "option -$OPTARG needs a value" ;;
        *) usage_error "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage_error "expected DEST_DIR, got $# argument(s)"
dest=$1

[[ $KEEP =~ ^[1-9][0-9]*$ ]] || usage_error "KEEP must be a whole number >= 1, got '$KEEP'"
[[ $PREFIX =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "PREFIX may contain only letters, digits, '.', '_' and '-'"

for tool in pg_dump pg_restore; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "$tool not found (Debian/Ubuntu: apt-get install postgresql-client-15 or newer)"
done

# Build pg_dump's connection argument. The password, if any, goes to PGPASSWORD (percent-decoded).
conn=()
if [[ -n $url ]]; then
    case $url in
        postgres://* | postgresql://*) ;;
        sqlite:*) usage_error "that is a SQLite URL: use backup-sqlite.sh" ;;
        *) usage_error "DATABASE_URL must start with postgres:// or postgresql://" ;;
    esac
    scheme=${url%%://*}
    rest=${url#*://}
    if [[ $rest == *@* ]]; then
        userinfo=${rest%@*}      # up to the last '@', as the server's own URL redaction does
        hostpart=${rest##*@}
        if [[ $userinfo == *:* ]]; then
            pass=${userinfo#*:}
            userinfo=${userinfo%%:*}
            pass=${pass//\\/\\\\}
            printf -v PGPASSWORD '%b' "${pass//%/\\x}"
            export PGPASSWORD
        fi
        url="$scheme://$userinfo@$hostpart"
    fi
    conn=(--dbname="$url")
fi
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
export PGAPPNAME=${PGAPPNAME:-vigil-backup}

umask 077
mkdir -p -- "$dest" || die "cannot create backup directory '$dest'"
[[ -d $dest && -w $dest ]] || die "backup directory '$dest' is not a writable directory"

if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest/.$PREFIX-backup.lock"
    flock -n 9 || die "another backup into '$dest' is running"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$dest/$PREFIX-$stamp.dump"
partial="$dest/.$PREFIX-$stamp.dump.partial"
[[ ! -e $final ]] || die "'$final' already exists (one backup per second at most)"
rm -f -- "$partial"
trap 'rm -f -- "$partial"' EXIT

log "dumping to '$final'"
# --lock-wait-timeout: fail instead of queueing forever behind an exclusive lock (a migration).
if ! pg_dump --format=custom --compress=6 --lock-wait-timeout=60s --no-password \
        --file="$partial" "${conn[@]}"; then
    die "pg_dump failed (see its message above)"
fi
[[ -s $partial ]] || die "the dump is empty"
if ! toc=$(pg_restore --list "$partial" 2>&1); then
    die "the dump is not a readable archive: $toc"
fi
grep -q ' TABLE ' <<<"$toc" || die "the dump contains no tables: is this the Vigil database?"

mv -f -- "$partial" "$final"
trap - EXIT
sync -- "$final" 2>/dev/null || true
log "ok: $final ($(wc -c <"$final") bytes)"

mapfile -t old < <(find "$dest" -maxdepth 1 -type f -name "$PREFIX-*.dump" -printf '%f\n' \
    | grep -E "^$PREFIX-[0-9]{8}T[0-9]{6}Z\.dump\$" | sort -r | tail -n +"$((KEEP + 1))")
for f in "${old[@]}"; do
    rm -f -- "${dest:?}/$f"
    log "removed old backup $f"
done
