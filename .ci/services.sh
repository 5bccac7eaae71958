#!/usr/bin/env bash
# Installs the services the cluster tests start (tests/services.py): a
# single-node SLURM cluster (slurm-wlm, munge) and PostgreSQL, and Chromium
# for the UI test, from Debian's packages, when missing. Idempotent and
# silent when all are present. The tests start and stop the daemons
# themselves, in temporary directories, so the packages' own services are
# kept from starting at install time.
set -euo pipefail

missing=()
command -v munged >/dev/null || [[ -x /usr/sbin/munged ]] || missing+=(munge)
for daemon in slurmctld slurmd; do
  command -v "$daemon" >/dev/null || [[ -x "/usr/sbin/$daemon" ]] || missing+=("$daemon")
done
command -v sbatch >/dev/null || missing+=(slurm-client)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# The browser `hydraflow ui`'s test loads MLflow's UI in (headless).
command -v chromium >/dev/null || missing+=(chromium)
((${#missing[@]} == 0)) && exit 0

if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "services: missing ${missing[*]}; install them (Debian: sudo apt-get install" \
    "slurmctld slurmd slurm-client munge postgresql chromium) or the SLURM, server and UI" \
    "tests skip" >&2
  exit 0
fi

echo "services: installing ${missing[*]}" >&2
# Debian's convention for "start no service now": policy-rc.d exiting 101.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
# An up-to-date package index only when the install needs one.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
