#!/usr/bin/env bash
# Make sure the PostgreSQL server the tests use (127.0.0.1:5432, trust auth) is up; start it if it is not.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ready; then exit 0; fi
version="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)"
if [ -z "$version" ]; then
  echo "PostgreSQL is not installed (no /etc/postgresql); the database tests need it on 127.0.0.1:5432" >&2
  exit 1
fi
echo "starting PostgreSQL $version ..." >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "PostgreSQL did not come up on 127.0.0.1:5432; try: pg_ctlcluster --skip-systemctl-redirect $version main start" >&2
exit 1
