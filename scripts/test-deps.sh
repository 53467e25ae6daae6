#!/usr/bin/env bash
# System packages the tests use. Installs them where it can (root + apt); otherwise says what
# is missing and fails, so that no test is skipped silently.
set -euo pipefail
need=()
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v shellcheck >/dev/null || need+=(shellcheck)  # tests/test_deploy.py
# (buildah, podman, runc and debootstrap: scripts/container-test.sh installs them itself.)
((${#need[@]})) || exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the Debian packages start system services we do not want; the tests start their own
  for svc in prometheus prometheus-pushgateway prometheus-node-exporter; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  done
else
  echo "missing test dependencies: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
