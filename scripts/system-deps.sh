#!/usr/bin/env bash
# Install the system packages the test-suite needs, when they are missing:
#   prometheus + promtool (Debian: prometheus)   - the real-Prometheus tests
#   kubectl (Debian: kubernetes-client)           - the external-metrics API tests (a real client)
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]}: install Prometheus (>= 2.40, with promtool) and kubectl, and put them on PATH" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${need[*]} (Debian packages, no recommends)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
