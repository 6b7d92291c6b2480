#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# The kernel's cost of one small loopback TCP message by system call
# (send/recv against writev/readv), pinned to the last CPU. See
# bench/lib/sockcost.c.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(mktemp -d /tmp/sluice-sockcost.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
cc -O2 -Wall -Wextra -Werror -o "$OUT/sockcost" "$HERE/lib/sockcost.c"
taskset -c "$(($(nproc) - 1))" "$OUT/sockcost"
