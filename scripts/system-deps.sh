#!/usr/bin/env bash
# System packages duizhang's tests need that are not Python packages.
#
# Idempotent: installs Debian's openssh-server (for the real sshd the connector tests run against) only when
# /usr/sbin/sshd is missing. Needs root (apt-get); prints what it did. Safe to run on every CI start.
set -euo pipefail

if [[ -x /usr/sbin/sshd ]]; then
    echo "system-deps: openssh-server already installed ($(/usr/sbin/sshd -V 2>&1 | head -n1 || true)); nothing to do"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-deps: /usr/sbin/sshd is missing and this script is not root: run it as root (apt-get)" >&2
    exit 1
fi

echo "system-deps: /usr/sbin/sshd missing; installing openssh-server with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out xauth and ncurses-term; we only need the daemon and internal-sftp.
apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
# The package's postinst may start a system sshd on port 22; the tests start their own on a free port,
# so stop a system one if policy-rc.d let it start (ignore errors where there is no init system).
if command -v service >/dev/null 2>&1; then
    service ssh stop >/dev/null 2>&1 || true
fi
echo "system-deps: installed $(/usr/sbin/sshd -V 2>&1 | head -n1 || echo openssh-server)"
