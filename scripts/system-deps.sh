#!/usr/bin/env bash
# System packages duizhang's tests need that are not Python packages.
#
# Idempotent: installs with apt-get only what is missing:
#   - Debian's openssh-server (/usr/sbin/sshd), for the real sshd the connector tests run against;
#   - Debian's chromium (/usr/bin/chromium), the headless browser that opens the daily report page in its test.
# Needs root only when something is missing; prints what it did. Safe to run on every CI start.
set -euo pipefail

missing=()
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-deps: openssh-server ($(/usr/sbin/sshd -V 2>&1 | head -n1 || true)) and chromium" \
         "($(chromium --version 2>/dev/null || echo '?')) already installed; nothing to do"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-deps: missing ${missing[*]} and this script is not root: run it as root (apt-get)" >&2
    exit 1
fi

echo "system-deps: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out xauth, ncurses-term and chromium's optional extras; we need the sshd with
# internal-sftp and the headless browser.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# openssh-server's postinst may start a system sshd on port 22; the tests start their own on a free port,
# so stop a system one if policy-rc.d let it start (ignore errors where there is no init system).
if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v service >/dev/null 2>&1; then
    service ssh stop >/dev/null 2>&1 || true
fi
echo "system-deps: installed ${missing[*]}"
