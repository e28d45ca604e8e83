#!/usr/bin/env python3
"""bench/failpoll.py: inject a fault, then time (monotonic ms) until a client is served through the VIP.

Run in the client's network namespace (bench/failover.sh does that). The clock starts just
before the fault is injected, so the fault's own cost is part of the figure:

  failpoll.py [--signal-ns NS --signal KILL|STOP] [--cmd 'ip -n .. link set v1 down']
              --host VIP [--port 80] [--path /hello.txt] [--timeout-ms 200]
              [--max-s 30] [--sources 10.99.0.101,...] [--pids-out FILE]

--signal-ns sends the signal to every process whose network namespace is /run/netns/NS
(found by the namespace inode, as `ip netns pids` does), twice, 20 ms apart, so a process
forked in between is caught too; the PIDs signalled are written to --pids-out.
A response counts when a TCP connection to host:port answers an HTTP GET with status 200
within --timeout-ms (connect + answer). With --sources, each source address is polled in
turn and the time is taken when every source has been served once after the fault.
Prints one line: "ms=<n> attempts=<n>" (exit 0) or "timeout after <n> ms attempts=<n>" (exit 1).
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def ns_pids(ns):
    """PIDs whose net namespace is the named one (never our own process)."""
    want = os.stat("/run/netns/" + ns).st_ino
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            if os.stat("/proc/%s/ns/net" % d).st_ino == want:
                out.append(int(d))
        except OSError:
            pass
    return out


def served(host, port, path, timeout_s, src):
    """One attempt: True when the server answered status 200 within timeout_s."""
    deadline = time.monotonic() + timeout_s
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if src:
                s.bind((src, 0))
            s.settimeout(timeout_s)
            s.connect((host, port))
            s.sendall(b"GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
            buf = b""
            while b"\r\n" not in buf and len(buf) < 4096:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                s.settimeout(left)
                d = s.recv(4096)
                if not d:
                    break
                buf += d
            parts = buf.split(b" ", 2)
            return len(parts) >= 2 and parts[1] == b"200"
        finally:
            s.close()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signal-ns")
    ap.add_argument("--signal", choices=["KILL", "STOP"])
    ap.add_argument("--cmd")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--path", default="/hello.txt")
    ap.add_argument("--timeout-ms", type=int, default=200)
    ap.add_argument("--max-s", type=float, default=30)
    ap.add_argument("--sources", default="")
    ap.add_argument("--pids-out")
    a = ap.parse_args()
    if bool(a.signal_ns) != bool(a.signal):
        ap.error("--signal-ns and --signal go together")
    sources = [x for x in a.sources.split(",") if x] or [None]

    sig = getattr(signal, "SIG" + a.signal) if a.signal else None
    hit = set()
    t0 = time.monotonic_ns()
    if sig is not None:
        for rnd in range(2):
            for p in ns_pids(a.signal_ns):
                try:
                    os.kill(p, sig)
                    hit.add(p)
                except ProcessLookupError:
                    pass
            if rnd == 0:
                time.sleep(0.02)
    if a.cmd:
        subprocess.run(a.cmd, shell=True, check=True)
    if a.pids_out:
        with open(a.pids_out, "w") as f:
            f.write("".join("%d\n" % p for p in sorted(hit)))

    todo = list(sources)
    max_ns = int(a.max_s * 1e9)
    attempts = 0
    # bounded by the clock and by count (an attempt takes at least ~1 ms when it fails fast,
    # because of the pause below)
    while attempts < 1000000:
        now = time.monotonic_ns()
        if now - t0 > max_ns:
            break
        src = todo[attempts % len(todo)]
        attempts += 1
        t_try = time.monotonic()
        if served(a.host, a.port, a.path, a.timeout_ms / 1000.0, src):
            todo.remove(src)
            if not todo:
                ms = (time.monotonic_ns() - t0) // 1000000
                print("ms=%d attempts=%d" % (ms, attempts))
                return 0
            continue
        # a refused or unreachable connect fails at once: do not spin the CPU the survivor needs
        if time.monotonic() - t_try < 0.005:
            time.sleep(0.005)
    print("timeout after %d ms attempts=%d" % ((time.monotonic_ns() - t0) // 1000000, attempts))
    return 1


if __name__ == "__main__":
    sys.exit(main())
