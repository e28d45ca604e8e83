#!/bin/bash
# Farm filter benchmark: XDP ns/packet (BPF_PROG_TEST_RUN repeat: VIP pass, VIP drop, non-VIP)
# and bucket share spread over 100 000 synthetic flows (weights 1,1,2, every flow through 3 nodes).
# Last line: xdp_ns_per_pkt=<max of the three> share_spread=<max deviation %>. Needs root (BPF).
set -euo pipefail
src=${SK_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
build=${SK_BUILD:-${1:-$src/build}}
bin=$build/test/bpf/lbbench
if [[ ! -x $bin ]]; then
	echo "xdp.sh: $bin not found; build first (meson setup BUILD && ninja -C BUILD) and pass BUILD or set SK_BUILD" >&2
	exit 2
fi
repeat=${XDP_BENCH_REPEAT:-1000000}
flows=${XDP_BENCH_FLOWS:-100000}
echo "# kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
"$bin" "$repeat" "$flows"
