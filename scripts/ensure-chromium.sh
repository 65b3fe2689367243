#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through playwright (never `playwright install`, which downloads a browser).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "Chromium is missing: run 'sudo apt-get update && sudo apt-get install -y chromium' (the browser tests need /usr/bin/chromium)" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser tests ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
test -x /usr/bin/chromium
