#!/usr/bin/env bash
# Run a command with DDS kept on loopback: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST always, and inside a private
# network namespace with only `lo` up where the machine allows it (unshare -n; root or user namespaces).
set -euo pipefail
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ -z "${CASMTR_IN_NETNS:-}" ] && [ "${CASMTR_NO_NETNS:-0}" != "1" ] && unshare -n true 2>/dev/null; then
  export CASMTR_IN_NETNS=1
  exec unshare -n bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' bash "$@"
fi
exec "$@"
