#!/usr/bin/env bash
# Install what modharness needs on a Debian 12 host: QEMU, a static busybox, kmod (depmod) and a
# kernel-module toolchain. Safe to run again.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends \
  qemu-system-x86 busybox-static kmod make gcc bc flex bison libelf-dev libssl-dev cpio \
  python3 gawk xz-utils \
  ca-certificates curl >/dev/null
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  $sudo apt-get install -y -q cargo rustc >/dev/null
fi
# What the tests check the reports and pipelines with: junitparser (a JUnit consumer),
# kcidb-io (KernelCI's validator), check-jsonschema (GitHub's and GitLab's CI schemas) and
# headless Chromium (report.html). Not needed to run modharness itself.
if [ "${MODHARNESS_TEST_TOOLS:-1}" = 1 ]; then
  $sudo apt-get install -y -q --no-install-recommends chromium >/dev/null
  python3 -m pip --version >/dev/null 2>&1 || $sudo apt-get install -y -q python3-pip >/dev/null
  tools=(junitparser kcidb-io check-jsonschema)
  python3 -m pip install -q "${tools[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${tools[@]}"
fi
