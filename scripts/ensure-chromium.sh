#!/usr/bin/env bash
# Debian's chromium for the real-browser e2e test (tests/e2e/test_browser.py): Playwright drives
# /usr/bin/chromium; no browser is downloaded (`playwright install` is never run).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "chromium: $(command -v chromium)"
