#!/usr/bin/env python3
# bench/breakdown.py: the workloads and the tables of bench/breakdown.sh (4 KiB write / write+fsync / create stage p50s, CPU per GiB per node).
import json
import os
import random
import socket
import subprocess
import sys
import time

PRIM = ["seal", "send", "local", "peer", "wait", "reply", "total"]
SEC = ["queue", "apply", "ack", "total"]


def status(sock):
    """skfused's status object from its control socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock)
    s.sendall(b'{"cmd":"status"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(65536)
        if not c:
            break
        buf += c
    s.close()
    return json.loads(buf)


def hist_diff(a, b):
    """b - a of two status histograms ([[lo_ns, count], ...]) -> sorted [(lo_ns, count)]."""
    d = {lo: c for lo, c in b}
    for lo, c in a:
        d[lo] = d.get(lo, 0) - c
    return sorted((lo, c) for lo, c in d.items() if c > 0)


def p50_us(h):
    """Median of a bucket list, in us (the bucket's lower bound plus half its width: 6 % wide)."""
    n = sum(c for _, c in h)
    if not n:
        return float("nan")
    want, acc = (n + 1) // 2, 0
    for i, (lo, c) in enumerate(h):
        acc += c
        if acc >= want:
            return lo * (1 + 1 / 32) / 1000.0
    return float("nan")


def stages(before, after, kind, names):
    out = {}
    for s in names:
        a = before["stages"][kind][s]
        b = after["stages"][kind][s]
        h = hist_diff(a["hist"], b["hist"])
        n = b["n"] - a["n"]
        out[s] = (n, p50_us(h), (b["sum_ns"] - a["sum_ns"]) / n / 1000.0 if n else float("nan"))
    return out


def pctl(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))] / 1000.0 if v else float("nan")


def prefill(path):
    """The 16 MiB file the writes go to, written before the measurement."""
    with open(path, "wb") as f:
        f.write(os.urandom(16 << 20))
        f.flush()
        os.fsync(f.fileno())


SYNC = os.fsync if os.environ.get("SYNC") == "fsync" else os.fdatasync
SYNC_NAME = "fsync" if os.environ.get("SYNC") == "fsync" else "fdatasync"
JBD2 = os.environ.get("SK_JBD2", "").split()


def jbd2_commits():
    """Journal commits so far of each loop image (bench/breakdown.sh SCRATCH=loop|loop2)."""
    out = []
    for name in JBD2:
        with open(f"/proc/fs/jbd2/{name}/info") as f:
            out.append(int(f.readline().split()[0]))
    return out


def run_writes(path, ops, fsync):
    """ops 4 KiB pwrites at random 4 KiB offsets of a 16 MiB file, SYNC (fdatasync) after each if fsync."""
    fd = os.open(path, os.O_RDWR)
    blk = os.urandom(4096)
    rnd = random.Random(7)
    wl, fl = [], []
    t_start = time.perf_counter_ns()
    for _ in range(ops):
        off = rnd.randrange(16 * 256) * 4096
        t0 = time.perf_counter_ns()
        os.pwrite(fd, blk, off)
        t1 = time.perf_counter_ns()
        wl.append(t1 - t0)
        if fsync:
            SYNC(fd)
            fl.append(time.perf_counter_ns() - t1)
    el = (time.perf_counter_ns() - t_start) / 1e9
    os.close(fd)
    return wl, fl, ops / el


def run_creates(d, n):
    """n files of 4 KiB made in the new directory d (open O_CREAT|O_EXCL, write, close), as bench/mkfiles.c."""
    os.mkdir(d)
    blk = os.urandom(4096)
    cl, wl = [], []
    t_start = time.perf_counter_ns()
    for i in range(n):
        t0 = time.perf_counter_ns()
        fd = os.open(os.path.join(d, "f%07d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        t1 = time.perf_counter_ns()
        os.write(fd, blk)
        wl.append(time.perf_counter_ns() - t1)
        os.close(fd)
        cl.append(t1 - t0)
    el = (time.perf_counter_ns() - t_start) / 1e9
    return cl, wl, n / el


def table(title, app_us, st_p, st_s, rtt):
    print(f"\n{title}")
    print(f"  application's call p50 {app_us:8.1f} us")
    n, tot, _ = st_p["total"]
    print(f"  primary skfused (p50 / mean us over {n} requests):")
    for s in PRIM:
        print(f"    {s:7s} {st_p[s][1]:8.1f} {st_p[s][2]:8.1f}")
    print(f"  secondary skfused (p50 / mean us over {st_s['total'][0]} frames acked):")
    for s in SEC:
        print(f"    {s:7s} {st_s[s][1]:8.1f} {st_s[s][2]:8.1f}")
    net = st_p["peer"][1] - st_s["total"][1] - st_p["send"][1]
    outside = app_us - tot
    print(f"  peer p50 minus send p50 and the secondary's total p50: {net:.1f} us "
          f"(the network both ways, the secondary's wake-up, the ack thread's; "
          f"4 KiB RTT on this link p50 {rtt:.1f} us)")
    print(f"  application's p50 minus skfused's total p50: {outside:.1f} us "
          "(kernel FUSE both ways: the request's queueing, the worker's and the application's wake-ups)")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read().rsplit(")", 1)[1].split()
    return int(s[11]) + int(s[12])  # utime + stime (fields 14, 15)


def machine_busy():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(x) for i, x in enumerate(v) if i in (0, 1, 2, 5, 6))


def dd_cpu(target, mib, pids):
    """dd bs=1M conv=fsync of mib MiB into target: CPU-seconds per GiB of dd, of each pid, of the machine."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = {p: cpu_ticks(p) for p in pids}
    m0 = machine_busy()
    r0 = os.times()
    w0 = time.time()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fsync"],
                   check=True, stderr=subprocess.DEVNULL)
    w1 = time.time()
    r1 = os.times()
    m1 = machine_busy()
    gib = mib / 1024.0
    out = {"dd": (r1.children_user + r1.children_system - r0.children_user - r0.children_system) / gib,
           "machine": (m1 - m0) / hz / gib, "MBps": mib * 1.048576 / (w1 - w0)}
    for p, name in pids.items():
        out[name] = (cpu_ticks(p) - t0[p]) / hz / gib
    os.unlink(target)
    return out


def main():
    mnt, native, ctl_p, ctl_s, pid_p, pid_s, ops, mib, rtt = sys.argv[1:10]
    ops, mib, rtt = int(ops), int(mib), float(rtt)
    prefill(os.path.join(native, "bd.dat"))  # the same write+sync on the backing file system itself
    j0 = jbd2_commits()
    wl, fl, iops = run_writes(os.path.join(native, "bd.dat"), ops, True)
    j1 = jbd2_commits()
    os.unlink(os.path.join(native, "bd.dat"))
    print(f"\nnative (the plain directory beside the copies): 4 KiB write+{SYNC_NAME} {iops:.0f}/s, "
          f"write() p50 {pctl(wl, 0.5):.1f} us, {SYNC_NAME}() p50 {pctl(fl, 0.5):.1f} us" +
          ("; journal commits per operation: " + ", ".join(
              f"{n} {(b - a) / ops:.2f}" for n, a, b in zip(JBD2, j0, j1)) if JBD2 else ""))
    prefill(os.path.join(mnt, "bd.dat"))
    for fsync in (False, True):
        b_p, b_s, j0 = status(ctl_p), status(ctl_s), jbd2_commits()
        wl, fl, iops = run_writes(os.path.join(mnt, "bd.dat"), ops, fsync)
        a_p, a_s, j1 = status(ctl_p), status(ctl_s), jbd2_commits()
        if b_p.get("peer") != "connected" or a_p.get("peer") != "connected":
            print("WARNING: the peer was not connected throughout")
        if not b_p["stages"]["on"] or not b_s["stages"]["on"]:  # SKFUSED_STAGES=0: the A/B of its cost
            print(f"\n4 KiB write{'+' + SYNC_NAME if fsync else ''} ({ops} ops, {iops:.0f}/s): "
                  f"write() p50 {pctl(wl, 0.5):.1f} us" +
                  (f", {SYNC_NAME}() p50 {pctl(fl, 0.5):.1f} us" if fsync else "") + " (stages off)")
            continue
        if not fsync:
            table(f"4 KiB write() ({ops} ops, {iops:.0f}/s)", pctl(wl, 0.5),
                  stages(b_p, a_p, "write", PRIM), stages(b_s, a_s, "write", SEC), rtt)
        else:
            table(f"4 KiB write+{SYNC_NAME} ({ops} ops, {iops:.0f}/s): the write()", pctl(wl, 0.5),
                  stages(b_p, a_p, "write", PRIM), stages(b_s, a_s, "write", SEC), rtt)
            table(f"4 KiB write+{SYNC_NAME}: the {SYNC_NAME}()", pctl(fl, 0.5),
                  stages(b_p, a_p, "fsync", PRIM), stages(b_s, a_s, "fsync", SEC), rtt)
        print(f"  ack thread woken by a sender {a_p.get('ack_kicks', 0) - b_p.get('ack_kicks', 0)} times, "
              f"its poll caught {a_p.get('ack_spin_hits', 0) - b_p.get('ack_spin_hits', 0)} acks")
        if JBD2:
            print("  journal commits per operation: " + ", ".join(
                f"{n} {(b - a) / ops:.2f}" for n, a, b in zip(JBD2, j0, j1)))
        print(f"  misordered stamps: primary {a_p['stages']['misordered']}, "
              f"secondary {a_s['stages']['misordered']}")
    b_p, b_s = status(ctl_p), status(ctl_s)
    cl, wl, fps = run_creates(os.path.join(mnt, "bd.creates"), ops)
    a_p, a_s = status(ctl_p), status(ctl_s)
    if "create" not in a_p["stages"] or not a_p["stages"]["on"] or not a_s["stages"]["on"]:
        print(f"\ncreates ({ops} files of 4 KiB, {fps:.0f}/s): open() p50 {pctl(cl, 0.5):.1f} us, "
              f"write() p50 {pctl(wl, 0.5):.1f} us (stages off)")
    else:
        table(f"creates ({ops} files of 4 KiB, {fps:.0f}/s): the open(O_CREAT)", pctl(cl, 0.5),
              stages(b_p, a_p, "create", PRIM), stages(b_s, a_s, "create", SEC), rtt)
        table("creates: the write() of 4 KiB into the new file", pctl(wl, 0.5),
              stages(b_p, a_p, "write", PRIM), stages(b_s, a_s, "write", SEC), rtt)
        print(f"  frames per file {(a_p['seq_sent'] - b_p['seq_sent']) / ops:.2f}, socket writes per file "
              f"{(a_p.get('stream_writes', 0) - b_p.get('stream_writes', 0)) / ops:.2f}")
    if mib > 0:
        nat = dd_cpu(os.path.join(native, "dd.dat"), mib, {})
        sk = dd_cpu(os.path.join(mnt, "dd.dat"), mib, {int(pid_p): "primary", int(pid_s): "secondary"})
        print(f"\ndd bs=1M count={mib} conv=fsync, CPU-seconds per GiB (utime+stime from /proc):")
        print(f"  native:    dd {nat['dd']:.2f}   machine {nat['machine']:.2f}   ({nat['MBps']:.0f} MB/s)")
        print(f"  steadykit: dd {sk['dd']:.2f} + primary skfused {sk['primary']:.2f} = primary node "
              f"{sk['dd'] + sk['primary']:.2f} ({(sk['dd'] + sk['primary']) / nat['dd']:.2f}x native's dd); "
              f"secondary skfused {sk['secondary']:.2f}; machine {sk['machine']:.2f} "
              f"({sk['machine'] / nat['machine']:.2f}x native's machine)   ({sk['MBps']:.0f} MB/s)")


if __name__ == "__main__":
    main()
