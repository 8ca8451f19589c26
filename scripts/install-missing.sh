#!/usr/bin/env bash
# Installs the Debian packages whose commands are missing, as root:
#   scripts/install-missing.sh WHY COMMAND=PACKAGE...
# e.g. scripts/install-missing.sh "the tests' IMAP server" /usr/sbin/dovecot=dovecot-imapd
# A COMMAND with a slash is a path that must exist; otherwise it is looked up on PATH.
set -euo pipefail

why=$1
shift
missing=()
for pair in "$@"; do
  command=${pair%%=*}
  package=${pair#*=}
  if [[ $command == */* ]]; then [ -x "$command" ] && continue
  else command -v "$command" >/dev/null 2>&1 && continue; fi
  missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ERROR: $why need: apt-get install ${missing[*]} (as root)" >&2
  exit 1
fi
echo "installing ${missing[*]} ($why)"
apt-get update -qq
# policy-rc.d, where present, keeps a package from starting a system service.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
