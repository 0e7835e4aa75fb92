#!/usr/bin/env bash
# The portal's browser tests drive Debian's chromium (Playwright cannot
# download its own browser here). Install it when missing and we may.
set -euo pipefail
CHROMIUM=${SKINCARE_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
  echo "The browser tests need chromium at $CHROMIUM: sudo apt-get install chromium (or set SKINCARE_CHROMIUM)" >&2
  exit 1
fi
