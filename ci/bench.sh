#!/usr/bin/env bash
# Benchmark: `modharness run smoke` against the best bare QEMU boot of the same kernel doing the
# same work (an equivalent busybox initramfs whose /init loads and unloads the same module 20
# times), and load/unload cycles per second inside the guest: the agent, a busybox shell loop,
# and a bare loop of finit_module/delete_module syscalls. Prints medians and ratios.
#   ci/bench.sh [RUNS]    (default 5; needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=target/x86_64-unknown-linux-gnu/release/modharness
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d /tmp/modharness-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

read -r _ release boot_image < <("$bin" images fetch debian:latest)
cache=${MODHARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modharness}
headers=$cache/kernels/debian-$release/root/usr/src/linux-headers-$release
cp -r guest-modules/mh_trivial "$work/mod"
make -s -C "$headers" M="$work/mod" CONFIG_DEBUG_INFO_BTF_MODULES= modules >/dev/null

# The bare guest: busybox, the module, a raw-syscall loop, and an /init doing the work.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys}
cp /bin/busybox "$root/bin/busybox"
for applet in sh mount insmod rmmod cat reboot; do ln -s busybox "$root/bin/$applet"; done
cp "$work/mod/mh_trivial.ko" "$root/mh_trivial.ko"
cat > "$work/cycle.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int n = atoi(argv[2]);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		int fd = open(argv[1], O_RDONLY);
		if (syscall(SYS_finit_module, fd, "", 0) || syscall(SYS_delete_module, "mh_trivial", O_NONBLOCK))
			return perror("cycle"), 1;
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("syscall-loop %.1f cycles/s\n", n / (b.tv_sec - a.tv_sec + (b.tv_nsec - a.tv_nsec) / 1e9));
	return 0;
}
C
gcc -O2 -static -o "$root/cycle" "$work/cycle.c"
write_init() { # $1 = what /init does after mounting
  printf '#!/bin/sh\nmount -t proc proc /proc\nmount -t devtmpfs dev /dev\n%s\nreboot -f\n' "$1" > "$root/init"
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd"
}
qemu_bare() {
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -net none \
    -M microvm,pit=on,pic=on,rtc=on,acpi=off -accel tcg,thread=multi -smp 2 -m 512M \
    -kernel "$boot_image" -initrd "$work/initrd" \
    -append "console=ttyS0 panic=-1 rdinit=/init reboot=t" -serial "file:$work/bare.log"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
wall() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }

write_init 'i=0; while [ $i -lt 20 ]; do insmod /mh_trivial.ko; rmmod mh_trivial; i=$((i+1)); done'
bare=$(for _ in $(seq "$runs"); do wall qemu_bare; done | median)
grep -q "mh_trivial: loaded" "$work/bare.log" || { echo "bare guest did not load the module"; exit 1; }
mh=$(for _ in $(seq "$runs"); do wall "$bin" run smoke --accel=tcg --out "$work/out"; done | median)
echo "smoke, 20 load/unload cycles, $release, TCG, median of $runs:"
printf '  bare QEMU + busybox init: %.2f s\n  modharness run smoke:     %.2f s\n  ratio: %.2f\n' \
  "$bare" "$mh" "$(echo "$mh / $bare" | bc -l)"

# Cycles per second inside the guest, 200 cycles each.
write_init 'start=$(cut -d" " -f1 /proc/uptime); i=0; while [ $i -lt 200 ]; do insmod /mh_trivial.ko; rmmod mh_trivial; i=$((i+1)); done; end=$(cut -d" " -f1 /proc/uptime); echo "busybox-loop $start $end"; /cycle /mh_trivial.ko 200'
qemu_bare >/dev/null 2>&1 || true
busybox_rate=$(awk '/busybox-loop/ {printf "%.1f", 200 / ($(NF) - $(NF-1))}' "$work/bare.log")
syscall_rate=$(grep -o 'syscall-loop [0-9.]*' "$work/bare.log" | awk '{print $2}')
cat > "$work/cycles.yaml" <<'Y'
name: cycles
steps:
  - repeat: { times: 200, steps: [ { load: mh_trivial }, { unload: mh_trivial } ] }
Y
"$bin" run "$work/cycles.yaml" --accel=tcg --out "$work/out2" >/dev/null 2>&1 || true
agent_rate=$(python3 -c "import json;print('%.1f'%json.load(open('$work/out2/report.json'))['runs'][0]['scenarios'][0]['steps']['load_unload_per_s'])")
echo "load+unload cycles per second in the guest (200 cycles):"
echo "  agent: $agent_rate   busybox insmod/rmmod loop: $busybox_rate   raw syscall loop: $syscall_rate"
