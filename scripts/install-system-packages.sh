#!/usr/bin/env bash
# Debian packages the tests use as real parts: rclone (storage), chromium (pages), nginx and wrk (bench);
# curl, openssl and xz-utils for the real control plane of the e2e tests (shared/k8s/up.sh);
# prometheus for promtool, which parses the dashboard's queries and the alerts.
set -euo pipefail
missing=()
command -v rclone >/dev/null || missing+=(rclone)
command -v chromium >/dev/null || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v xz >/dev/null || missing+=(xz-utils)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
