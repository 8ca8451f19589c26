#!/usr/bin/env bash
# Servers the tests start for themselves, beyond RabbitMQ and PostgreSQL: Dovecot, the IMAP
# server the mailbox intake is tested against (tests/dovecot.py starts a private one per
# test). Installed from Debian's packages when missing; never started as a system service.
set -euo pipefail

if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing dovecot-imapd (the tests' IMAP server)"
  # policy-rc.d keeps the package from starting a system Dovecot where one could start.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  exit 0
fi
echo "ERROR: the tests need Dovecot's IMAP server: apt-get install dovecot-imapd (as root)" >&2
exit 1
