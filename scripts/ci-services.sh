#!/usr/bin/env bash
# The services the integration tests need, on a fresh Debian machine: PostgreSQL on 127.0.0.1:5432 (user postgres,
# trust auth from localhost, database `test`) for the Airflow metadata databases and the ledger tests, and Redis on
# 127.0.0.1:6379, the Celery broker.
#
# Idempotent: installs with apt-get only what is missing, starts only what is not answering, and leaves a machine
# where both already run (as on the developers' machines) untouched. Needs root only when it has to install or
# start something.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ "$(id -u)" -eq 0 ]] || { echo "ci-services: missing ${missing[*]}; run as root (apt-get)" >&2; exit 1; }
    echo "ci-services: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pg_up; then
    version=$(ls /etc/postgresql | sort -n | tail -n1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # Tests connect as postgres without a password, from 127.0.0.1 only: a throwaway CI database.
    grep -q "^host all all 127.0.0.1/32 trust" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster "$version" main start
    for _ in $(seq 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "ci-services: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null

if ! redis_up; then
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null
    for _ in $(seq 30); do redis_up && break; sleep 1; done
fi
redis_up || { echo "ci-services: Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }
echo "ci-services: PostgreSQL $(psql -h 127.0.0.1 -U postgres -tAc 'SHOW server_version') and Redis" \
     "$(redis-cli -h 127.0.0.1 info server | grep -o 'redis_version:[0-9.]*' | cut -d: -f2) answer on 127.0.0.1"
