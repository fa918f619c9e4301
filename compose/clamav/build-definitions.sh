#!/usr/bin/env bash
# Builds an official-looking daily database offline, for the local stack and the tests: a
# `daily.cud` (an unsigned CVD container, which clamd accepts under that name) holding the given
# .ndb/.hdb signature files, with a version and a build time of our choosing, so that clamd's
# VERSION names it as it names ClamAV's own daily database. freshclam then fetches it from a
# mirror directory (DatabaseCustomURL), as a private mirror serves the real one.
#
#   build-definitions.sh OUT_DIR VERSION [BUILD_TIME] SIGNATURE_FILE...
#     BUILD_TIME: 'YYYY-MM-DD HH:MM:SS' UTC (default: now); an old one makes stale definitions.
# Needs sigtool (Debian `clamav`) and, for BUILD_TIME, faketime.
set -euo pipefail

out=$1 version=$2
shift 2
build_time=""
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9:]{8}$ ]]; then
    build_time=$1
    shift
fi
[ $# -gt 0 ] || { echo "usage: $0 OUT_DIR VERSION [BUILD_TIME] SIGNATURE_FILE..." >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for file in "$@"; do
    ext=${file##*.}
    # sigtool packs every database file in the directory; one file per kind, named daily.*.
    cat "$file" >> "$work/daily.$ext"
done
echo "avscan test definitions: not for protection" > "$work/COPYING"
(
    cd "$work"
    if [ -n "$build_time" ]; then
        echo avscan | TZ=UTC faketime "$build_time" sigtool --build=daily.cvd --unsigned \
            --cvd-version="$version" --datadir=. >/dev/null 2>&1
    else
        echo avscan | TZ=UTC sigtool --build=daily.cvd --unsigned --cvd-version="$version" --datadir=. >/dev/null 2>&1
    fi
)
[ -s "$work/daily.cvd" ] || { echo "sigtool built nothing" >&2; exit 1; }
mkdir -p "$out"
# clamd refuses an unsigned container named .cvd ("Can't verify database integrity"), not .cud.
install -m 0644 "$work/daily.cvd" "$out/daily.cud.tmp"
mv "$out/daily.cud.tmp" "$out/daily.cud"
