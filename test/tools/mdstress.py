#!/usr/bin/env python3
"""mdstress: a concurrent namespace/metadata stress (in the spirit of fsstress), several processes
each with its own umask, on any directory.

  mdstress.py DIR [--procs N] [--ops N] [--seed S] [--umasks 0,022,077,002] [--creates] [--burst N]

Each process i runs with umask umasks[i % len] in DIR/p<i> and in the shared DIR/shared (so
renames and links cross between processes) and does --ops random operations: create, mkdir,
mknod (fifo), symlink, link, rename (also exchange), unlink, rmdir, chmod, chown, truncate,
write, fallocate-free extension, setxattr, removexattr, utimes (ns). Operations that race with
another process (ENOENT, EEXIST, ENOTEMPTY...) are expected and ignored.
--creates: only creates, mkdirs and mkfifos (the operations a umask applies to).
--burst N: pause 30 ms after every N operations, so a server's idle worker threads exit and new
ones start on the next burst (a thread started by another thread inherits its state).

What it checks itself, as an application would: every file and directory it creates has
mode & ~umask (the caller's umask, as on a local filesystem; none of the directories carries
a default ACL). Prints "mode-mismatch path got want umask" per violation and a summary line
"mdstress: N ops, M created, K mode mismatches"; exit 1 if any mismatch, 2 on a crash of a worker.
"""
import argparse
import errno
import os
import random
import stat
import sys
import time

IGNORED = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR, errno.EINVAL,
           errno.EXDEV, errno.EBUSY, errno.ENODATA, errno.EMLINK, errno.ELOOP, errno.EPERM}
FILE_MODES = (0o666, 0o644, 0o600, 0o777, 0o640, 0o604, 0o660)
DIR_MODES = (0o777, 0o755, 0o700, 0o775, 0o750)
OWNERS = ((0, 0), (1000, 1000), (65534, 65534), (1000, 0), (0, 1234))


def worker(root, idx, umask, nops, seed, out, creates=False, burst=0):
    rnd = random.Random(seed * 1000 + idx)
    os.umask(umask)
    mine = os.path.join(root, "p%d" % idx)
    shared = os.path.join(root, "shared")
    dirs = [mine, shared]
    names = []          # candidate paths (may be stale: other processes move things)
    created = mismatch = 0
    ctr = 0

    def newname(kind):
        nonlocal ctr
        ctr += 1
        return os.path.join(rnd.choice(dirs), "%s%d_%d" % (kind, idx, ctr))

    def pick():
        if names and rnd.random() < 0.9:
            return rnd.choice(names)
        return newname("x")

    def check(path, got, want_mode, what):
        nonlocal mismatch
        want = want_mode & ~umask
        if stat.S_IMODE(got) & 0o777 != want & 0o777:
            mismatch += 1
            out.write("mode-mismatch %s %04o %04o umask %03o (%s)\n" %
                      (os.path.relpath(path, root), stat.S_IMODE(got), want, umask, what))

    for i in range(nops):
        op = rnd.randrange(100) if not creates else rnd.choice((0, 0, 0, 0, 20, 25))
        if burst and i % burst == burst - 1:
            time.sleep(0.03)
        try:
            if op < 18:                                     # create (+ some data)
                p = newname("f")
                m = rnd.choice(FILE_MODES)
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, m)
                try:
                    check(p, os.fstat(fd).st_mode, m, "create")
                    if rnd.random() < 0.5:
                        os.write(fd, rnd.randbytes(rnd.randrange(1, 20000)))
                finally:
                    os.close(fd)
                created += 1
                names.append(p)
            elif op < 24:                                   # mkdir
                p = newname("d")
                m = rnd.choice(DIR_MODES)
                os.mkdir(p, m)
                check(p, os.lstat(p).st_mode, m, "mkdir")
                created += 1
                if len(dirs) < 40:
                    dirs.append(p)
                # the directory itself must stay writable for the next creates (as root it is)
            elif op < 26:                                   # mknod fifo
                p = newname("q")
                m = rnd.choice(FILE_MODES)
                os.mkfifo(p, m)
                check(p, os.lstat(p).st_mode, m, "mkfifo")
                created += 1
                names.append(p)
            elif op < 29:                                   # symlink
                p = newname("l")
                os.symlink(os.path.basename(pick()), p)
                names.append(p)
            elif op < 33:                                   # hard link
                p = newname("h")
                os.link(pick(), p, follow_symlinks=False)
                names.append(p)
            elif op < 42:                                   # rename (sometimes over an existing name)
                src = pick()
                dst = pick() if rnd.random() < 0.3 else newname("r")
                os.rename(src, dst)
                names.append(dst)
            elif op < 49:                                   # unlink
                p = pick()
                os.unlink(p)
            elif op < 51:                                   # rmdir of an empty directory
                if len(dirs) > 2:
                    d = rnd.choice(dirs[2:])
                    os.rmdir(d)
                    dirs.remove(d)
            elif op < 58:                                   # chmod (set-id bits sometimes)
                p = pick()
                os.chmod(p, rnd.choice(FILE_MODES) | rnd.choice((0, 0, 0, 0o4000, 0o2000, 0o1000)),
                         follow_symlinks=True)
            elif op < 63:                                   # chown
                u, g = rnd.choice(OWNERS)
                os.chown(pick(), u, g, follow_symlinks=False)
            elif op < 69:                                   # truncate
                os.truncate(pick(), rnd.randrange(0, 100000))
            elif op < 80:                                   # write at an offset
                fd = os.open(pick(), os.O_WRONLY | os.O_NONBLOCK)
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        os.pwrite(fd, rnd.randbytes(rnd.randrange(1, 70000)), rnd.randrange(0, 200000))
                finally:
                    os.close(fd)
            elif op < 86:                                   # setxattr
                os.setxattr(pick(), "user.k%d" % rnd.randrange(4), rnd.randbytes(rnd.randrange(0, 300)),
                            follow_symlinks=False)
            elif op < 88:                                   # removexattr
                os.removexattr(pick(), "user.k%d" % rnd.randrange(4), follow_symlinks=False)
            elif op < 96:                                   # utimes in ns
                t = rnd.randrange(10**9, 2 * 10**9) * 10**9 + rnd.randrange(10**9)
                os.utime(pick(), ns=(t + rnd.randrange(10**9), t), follow_symlinks=False)
            else:                                           # create with O_TRUNC on an existing name
                p = pick()
                fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK | os.O_NOFOLLOW, 0o666)
                os.close(fd)
        except OSError as e:
            if e.errno not in IGNORED and e.errno != errno.ENXIO:  # ENXIO: a fifo without reader
                out.write("unexpected %s: %s\n" % (errno.errorcode.get(e.errno, e.errno), e))
        if len(names) > 400:
            names = names[-200:]
    out.write("worker %d umask %03o: %d created, %d mode mismatches\n" % (idx, umask, created, mismatch))
    out.flush()
    return 1 if mismatch else 0


def main():
    ap = argparse.ArgumentParser(description="concurrent namespace/metadata stress")
    ap.add_argument("dir")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--umasks", default="0,022,077,002")
    ap.add_argument("--creates", action="store_true")
    ap.add_argument("--burst", type=int, default=0)
    a = ap.parse_args()
    umasks = [int(u, 8) for u in a.umasks.split(",")]
    os.makedirs(os.path.join(a.dir, "shared"), exist_ok=True)
    os.chmod(os.path.join(a.dir, "shared"), 0o777)
    for i in range(a.procs):
        os.makedirs(os.path.join(a.dir, "p%d" % i), exist_ok=True)
    pids = []
    for i in range(a.procs):
        pid = os.fork()
        if pid == 0:
            rc = 2
            try:
                rc = worker(a.dir, i, umasks[i % len(umasks)], a.ops, a.seed, sys.stdout, a.creates, a.burst)
            finally:
                sys.stdout.flush()
                os._exit(rc)
        pids.append(pid)
    worst = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(st)
        worst = max(worst, 2 if rc not in (0, 1) else rc)
    print("mdstress: %d processes x %d ops, umasks %s: %s" %
          (a.procs, a.ops, a.umasks, "mode mismatches" if worst == 1 else "failed" if worst else "ok"))
    return worst


if __name__ == "__main__":
    sys.exit(main())
