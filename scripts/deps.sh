#!/usr/bin/env bash
# Installs the Debian 12 packages sluice builds, runs and tests with.
set -euo pipefail
packages=(build-essential cmake pkg-config libevent-dev libhiredis-dev libluajit-5.1-dev
          libcjson-dev libhttp-parser-dev libcmocka-dev libssl-dev openssl redis-server redis-tools curl wrk
          python3 valgrind prometheus
          dpkg-dev fakeroot file lintian pandoc mandoc groff logrotate adduser systemd
          dnsmasq-base)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
