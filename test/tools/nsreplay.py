#!/usr/bin/env python3
"""nsreplay: a seeded, single-threaded history of namespace and metadata operations, logged as acked.

  nsreplay.py run DIR LOG --seed S [--ops N]
      Performs op 1..N on DIR (create, append, pwrite, truncate, rename incl. replace, unlink,
      mkdir, rmdir, dir rename, symlink, setxattr, chmod), writing "k" to LOG after op k
      returned. Stops at the first error (e.g. the mount died) and exits 2, else 0.
  nsreplay.py check DIR LOG --seed S [--ops N]
      Rebuilds the same history in memory (a model; no filesystem needed) and looks for the
      op count k whose state equals DIR (names, types, contents, modes, symlink targets,
      user xattrs; times are not compared). Passes if such a k exists and k >= the last acked
      op: DIR is a state the primary passed through and holds every acknowledged operation.
      Every op is one state change (one FUSE call) except create, which is CREATE then WRITE:
      the state between the two is accepted for an op that was never acknowledged.
The history depends only on the seed: every op is valid in the model, so it succeeds on a
healthy filesystem.
"""
import argparse
import os
import random
import stat
import sys


class Model:
    """Entries by relative path: ('d', mode, {}) | ('f', mode, bytes, xattrs) | ('l', target)."""

    def __init__(self):
        self.e = {}
        self.n = 0
        self.nkids = {"": 0}   # directory -> number of entries in it

    @staticmethod
    def parent(p):
        return p.rsplit("/", 1)[0] if "/" in p else ""

    def add(self, p, v):
        if p not in self.e:
            self.nkids[self.parent(p)] += 1
        self.e[p] = v
        if v[0] == "d":
            self.nkids.setdefault(p, 0)

    def remove(self, p):
        v = self.e.pop(p)
        self.nkids[self.parent(p)] -= 1
        if v[0] == "d":
            del self.nkids[p]
        return v

    def under(self, d):
        return [p for p in self.e if p == d or p.startswith(d + "/")]

    def dirs(self):
        return [""] + sorted(p for p, v in self.e.items() if v[0] == "d")

    def files(self):
        return sorted(p for p, v in self.e.items() if v[0] == "f")

    def name(self, parent, kind):
        self.n += 1
        return (parent + "/" if parent else "") + "%s%05d" % (kind, self.n)


def ops(seed, count):
    """Yield (k, op tuple) for the seeded history, updating a model as it goes."""
    rnd = random.Random(seed)
    m = Model()
    for k in range(1, count + 1):
        files, dirs = m.files(), m.dirs()
        choice = rnd.random()
        if choice < 0.22 or not files:
            p = m.name(rnd.choice(dirs), "f")
            data = rnd.randbytes(rnd.randrange(0, 3000))
            m.add(p, ("f", 0o644, data, {}))
            op = ("create", p, data)
        elif choice < 0.36:
            p = rnd.choice(files)
            data = rnd.randbytes(rnd.randrange(1, 2000))
            t, mode, old, x = m.e[p]
            m.e[p] = (t, mode, old + data, x)
            op = ("append", p, data)
        elif choice < 0.44:
            p = rnd.choice(files)
            t, mode, old, x = m.e[p]
            off = rnd.randrange(0, len(old) + 100)
            data = rnd.randbytes(rnd.randrange(1, 500))
            new = old.ljust(off, b"\0")[:off] + data + old[off + len(data):]
            m.e[p] = (t, mode, new, x)
            op = ("pwrite", p, off, data)
        elif choice < 0.50:
            p = rnd.choice(files)
            t, mode, old, x = m.e[p]
            size = rnd.randrange(0, len(old) + 200)
            m.e[p] = (t, mode, old[:size].ljust(size, b"\0"), x)
            op = ("truncate", p, size)
        elif choice < 0.62:
            src = rnd.choice(files)
            if rnd.random() < 0.4 and len(files) > 1:
                dst = rnd.choice([f for f in files if f != src])   # replace an existing file
            else:
                dst = m.name(rnd.choice(dirs), "r")
            v = m.remove(src)
            if dst in m.e:
                m.remove(dst)
            m.add(dst, v)
            op = ("rename", src, dst)
        elif choice < 0.70:
            p = rnd.choice(files)
            m.remove(p)
            op = ("unlink", p)
        elif choice < 0.77:
            p = m.name(rnd.choice(dirs), "d")
            m.add(p, ("d", 0o755, {}))
            op = ("mkdir", p)
        elif choice < 0.81:
            empty = [d for d in dirs if d and m.nkids[d] == 0]
            if not empty:
                yield k, ("noop",), m
                continue
            p = rnd.choice(empty)
            m.remove(p)
            op = ("rmdir", p)
        elif choice < 0.85:
            movable = [d for d in dirs if d]
            if not movable:
                yield k, ("noop",), m
                continue
            src = rnd.choice(movable)
            targets = [d for d in dirs if d != src and not d.startswith(src + "/")]
            dst = m.name(rnd.choice(targets), "m")
            moved = sorted(m.under(src))          # parents before children
            vals = {p: m.e[p] for p in moved}
            for p in reversed(moved):             # children before parents
                m.remove(p)
            for p in moved:
                m.add(dst + p[len(src):], vals[p])
            op = ("rename", src, dst)
        elif choice < 0.90:
            p = m.name(rnd.choice(dirs), "l")
            target = "target-%d" % rnd.randrange(1000)
            m.add(p, ("l", target))
            op = ("symlink", p, target)
        elif choice < 0.95:
            p = rnd.choice(files)
            t, mode, data, x = m.e[p]
            key, val = "user.k%d" % rnd.randrange(3), rnd.randbytes(rnd.randrange(1, 40))
            x = dict(x)
            x[key] = val
            m.e[p] = (t, mode, data, x)
            op = ("setxattr", p, key, val)
        else:
            p = rnd.choice(files)
            t, mode, data, x = m.e[p]
            mode = rnd.choice((0o600, 0o640, 0o644, 0o660, 0o755))
            m.e[p] = (t, mode, data, x)
            op = ("chmod", p, mode)
        yield k, op, m


def apply(root, op):
    J = lambda p: os.path.join(root, p)
    kind = op[0]
    if kind == "create":
        fd = os.open(J(op[1]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, op[2]) if op[2] else None
        os.close(fd)
    elif kind == "append":
        fd = os.open(J(op[1]), os.O_WRONLY | os.O_APPEND)
        os.write(fd, op[2])
        os.close(fd)
    elif kind == "pwrite":
        fd = os.open(J(op[1]), os.O_WRONLY)
        os.pwrite(fd, op[3], op[2])
        os.close(fd)
    elif kind == "truncate":
        os.truncate(J(op[1]), op[2])
    elif kind == "rename":
        os.rename(J(op[1]), J(op[2]))
    elif kind == "unlink":
        os.unlink(J(op[1]))
    elif kind == "mkdir":
        os.mkdir(J(op[1]), 0o755)
    elif kind == "rmdir":
        os.rmdir(J(op[1]))
    elif kind == "symlink":
        os.symlink(op[2], J(op[1]))
    elif kind == "setxattr":
        os.setxattr(J(op[1]), op[2], op[3])
    elif kind == "chmod":
        os.chmod(J(op[1]), op[2])


def snapshot_model(m):
    out = {}
    for p, v in m.e.items():
        if v[0] == "d":
            out[p] = ("d", v[1])
        elif v[0] == "f":
            out[p] = ("f", v[1], v[2], tuple(sorted(v[3].items())))
        else:
            out[p] = ("l", v[1])
    return out


def snapshot_tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            else:
                with open(full, "rb") as f:
                    data = f.read()
                x = {k: os.getxattr(full, k) for k in os.listxattr(full) if k.startswith("user.")}
                out[rel] = ("f", stat.S_IMODE(st.st_mode), data, tuple(sorted(x.items())))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("run", "check"))
    ap.add_argument("dir")
    ap.add_argument("log")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, default=100000)
    a = ap.parse_args()
    if a.mode == "run":
        os.umask(0o022)
        logfd = os.open(a.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        for k, op, _ in ops(a.seed, a.ops):
            try:
                if op[0] != "noop":
                    apply(a.dir, op)
            except OSError as e:
                print("nsreplay: op %d %s: %s" % (k, op[0], e), file=sys.stderr)
                return 2
            os.write(logfd, b"%d\n" % k)  # acknowledged: the call returned
        return 0
    acked = 0
    with open(a.log) as f:
        for line in f:
            if line.strip():
                acked = max(acked, int(line))
    tree = snapshot_tree(a.dir)
    matches, best = [], None
    lo = max(0, acked - 50)   # a healthy peer is at acked or one op ahead; look a bit around it
    if lo == 0 and not tree:
        matches.append(0)
    partial = []
    for k, op, m in ops(a.seed, min(a.ops, acked + 5)):
        if k < lo:
            continue
        s = snapshot_model(m)
        if s == tree:
            matches.append(k)
        elif op[0] == "create" and op[2] and dict(s, **{op[1]: ("f", 0o644, b"", ())}) == tree:
            # the one op made of two state changes (CREATE, then WRITE): caught in between
            partial.append(k)
        else:
            d = len(set(s.items()) ^ set(tree.items()))
            if best is None or d <= best[1]:
                best = (k, d)
    # complete after op k >= acked, or in the middle of an op k > acked (never acked, so may be half done)
    ok = any(k >= acked for k in matches) or any(k > acked for k in partial)
    print("nsreplay: last acked op %d; tree equals the state after op(s) %s%s -> %s" % (
        acked, matches[-5:] if matches else "none in [%d, %d]" % (lo, acked + 5),
        "; the state inside create op(s) %s (file created, data not yet written)" % partial[-3:] if partial else "",
        "ok" if ok else "BAD"))
    if not matches and not partial and best:
        print("nsreplay: closest state: after op %d, %d differing entries" % best)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
