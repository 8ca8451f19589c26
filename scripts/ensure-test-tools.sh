#!/usr/bin/env bash
# What the tests need beyond Python packages, RabbitMQ and PostgreSQL:
# - Dovecot, the IMAP server the mailbox intake is tested against (tests/dovecot.py starts a
#   private one per test; never started as a system service);
# - Chromium, which Playwright drives in the console's browser tests (Debian's, never a
#   downloaded browser);
# - axe-core from npm, the accessibility checker those tests run in each page.
# Debian packages are installed when missing (as root); axe-core goes to var/test-tools/.
set -euo pipefail
cd "$(dirname "$0")/.."

AXE_VERSION=4.14.1
AXE_DIR=var/test-tools/axe-core-$AXE_VERSION

scripts/install-missing.sh "the tests' IMAP server and browser" \
  /usr/sbin/dovecot=dovecot-imapd chromium=chromium

if [ ! -f "$AXE_DIR/axe.min.js" ]; then
  command -v npm >/dev/null 2>&1 || { echo "ERROR: npm is needed to fetch axe-core" >&2; exit 1; }
  mkdir -p "$AXE_DIR"
  work=$(mktemp -d)
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$work" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar xzf axe-core-*.tgz)
  cp "$work/package/axe.min.js" "$work/package/LICENSE" "$AXE_DIR/"
  rm -rf "$work"
fi
