#!/usr/bin/env bash
# Benchmark: a mass probe by modharness against the bare way of doing the same work - a busybox
# /init running `modprobe M; modprobe -r M` over the same modules of the kernel's own tree
# (decompressed on the host, signatures kept, as a user's loop would have them) under bare QEMU.
# Both take every STEP-th module of modules.order on Debian's newest kernel, TCG, no devices.
# Prints modules per second of each and the ratios.
#   ci/bench-probe.sh [STEP]    (default 20: about 210 of 4,230 modules; 1 = the whole tree)
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-20}
bin=target/x86_64-unknown-linux-gnu/release/modharness
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d /tmp/modharness-bench-probe.XXXXXX)
trap 'rm -rf "$work"' EXIT

read -r _ release boot_image < <("$bin" images fetch debian:latest)
cache=${MODHARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modharness}
tree=$cache/kernels/debian-$release/root/lib/modules/$release

# The bare guest: busybox, the decompressed tree, and an /init that probes the list.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys} "$root/lib/modules/$release"
cp /bin/busybox "$root/bin/busybox"
for applet in sh mount modprobe cat reboot cut; do ln -s busybox "$root/bin/$applet"; done
(cd "$tree" && find kernel -name '*.ko*') | while read -r f; do
  mkdir -p "$root/lib/modules/$release/$(dirname "$f")"
  case $f in
    *.xz) xz -dc "$tree/$f" > "$root/lib/modules/$release/${f%.xz}" ;;
    *) cp "$tree/$f" "$root/lib/modules/$release/$f" ;;
  esac
done
for index in modules.dep modules.order modules.alias modules.builtin; do
  sed 's/\.ko\.xz/.ko/g' "$tree/$index" > "$root/lib/modules/$release/$index"
done
awk -v step="$step" 'NR % step == 1 { n = split($0, p, "/"); m = p[n]; sub(/\.ko.*/, "", m); gsub("-", "_", m); print m }' \
  "$tree/modules.order" > "$root/list"
count=$(wc -l < "$root/list")
cat > "$root/init" <<'SH'
#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev
start=$(cut -d" " -f1 /proc/uptime)
while read -r m; do modprobe "$m" 2>/dev/null; modprobe -r "$m" 2>/dev/null; done < /list
end=$(cut -d" " -f1 /proc/uptime)
echo "bare-probe $start $end"
reboot -f
SH
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd"
qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -net none \
  -M microvm,pit=on,pic=on,rtc=on,acpi=off -accel tcg,thread=multi -smp 2 -m 3G \
  -kernel "$boot_image" -initrd "$work/initrd" \
  -append "console=ttyS0 panic=-1 rdinit=/init reboot=t" -serial "file:$work/bare.log" \
  >/dev/null 2>&1 || true
bare=$(awk '/bare-probe/ {printf "%.2f", ($(NF) - $(NF-1))}' "$work/bare.log")
[ -n "$bare" ] || { echo "the bare guest did not finish its probe"; tail "$work/bare.log"; exit 1; }

# The same list through modharness: stock options as the bare loop has them, then the shape
# the bundled mass-probe-all uses (two one-CPU VMs, expedited RCU).
probe() { # $1 = name, $2 = vm settings, $3 = extra mass_probe keys
  cat > "$work/$1.yaml" <<Y
name: $1
vm: { memory: 3G, timeout: 60m, $2 }
steps:
  - mass_probe: { modules: all, rounds: 1, shard: 1/$step ${3:-} }
Y
  "$bin" run "$work/$1.yaml" --out "$work/$1" >/dev/null 2>&1 || true
  python3 -c "import json;r=json.load(open('$work/$1/report.json'))['runs'][0]['scenarios'][0]['mass_probe']['rounds'][0];print('%.2f %d' % (r['seconds'], r['modules']))"
}
read -r stock stock_n < <(probe stock "cpus: 2")
read -r fast fast_n < <(probe fast 'cpus: 1, cmdline: "rcupdate.rcu_expedited=1"' ", vms: 2")
echo "mass probe of $count modules (every ${step}th of modules.order), $release, TCG:"
printf '  bare QEMU + busybox modprobe loop:       %7.1f s  %5.1f modules/s\n' "$bare" "$(echo "$count / $bare" | bc -l)"
printf '  modharness, stock boot options, 2 vCPUs: %7.1f s  %5.1f modules/s  (%.2fx bare)\n' \
  "$stock" "$(echo "$stock_n / $stock" | bc -l)" "$(echo "$bare / $stock" | bc -l)"
printf '  modharness, 2 VMs x 1 vCPU, expedited:   %7.1f s  %5.1f modules/s  (%.2fx bare)\n' \
  "$fast" "$(echo "$fast_n / $fast" | bc -l)" "$(echo "$bare / $fast" | bc -l)"
