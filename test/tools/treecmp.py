#!/usr/bin/env python3
"""treecmp: compare two directory trees the way a replica must match its primary.

Properties compared, each reported separately so a test can print one TAP line per property:
  entries   same relative paths on both sides
  type      file type (regular, dir, symlink, fifo, char/block device, socket)
  mode      permission bits incl. setuid/setgid/sticky
  owner     uid:gid
  size      st_size of regular files and symlinks
  content   bytes of regular files (holes read as zeros, so a punched hole equals written zeros)
  rdev      device numbers of char/block devices
  symlink   symlink targets
  nlink     link counts (directories included)
  hardlinks hard-link groups: paths sharing one inode on one side share one on the other
  xattr     extended attributes other than ACLs (name and value)
  acl       system.posix_acl_access / system.posix_acl_default (raw bytes)
  mtime     mtime in ns of every path (a replica that applies ops later must still carry the
            primary's mtimes; --no-mtime skips it)
  times     mtime and atime in ns, for the paths named by --times FILE (or all with --times all);
            atime changes on every read, so only paths set by utimensat are expected to match;
            ctime can never match and is not compared

Usage: treecmp.py [--summary] [--props P,P...] [--times all|none|FILE] [--no-mtime] [--exclude NAME]...
                  [--max N] A B
  --summary  print "prop<TAB>ok|FAIL<TAB>count<TAB>first difference" for every property compared
  --props    compare only these properties (an unknown name is a usage error, never skipped);
             the exit status then covers only them
  --exclude  skip entries with this name at any depth (e.g. the daemon's own state dir)
  --times FILE: every path listed must exist on both sides (a listed path that is missing is a
             difference, not a path silently left out)
Exit status: 0 identical, 1 different, 2 usage or I/O error or any failure of the tool itself
(a crash never looks like "different" or "identical").
Extended attributes that cannot be listed on one side (ENOTSUP, EPERM) count as a difference
when the other side has some.
All stats are taken before any file is read, and files are opened with O_NOATIME,
so comparing does not change the atimes it compares.
"""
import argparse
import errno
import hashlib
import os
import resource
import stat
import sys

PROPS = ["entries", "type", "mode", "owner", "size", "content", "rdev", "symlink", "nlink",
         "hardlinks", "xattr", "acl", "mtime", "times"]
ACL_NAMES = ("system.posix_acl_access", "system.posix_acl_default")


def ftype(m):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"),
                       (stat.S_ISSOCK, "socket")):
        if test(m):
            return name
    return "unknown"


def xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            # not an empty set: compared as unreadable, so a side that has some differs
            return {"<listxattr>": "<error %s>" % errno.errorcode.get(e.errno, e.errno)}
        raise
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = "<error %s>" % errno.errorcode.get(e.errno, e.errno)
    return out


def scan(root, excludes):
    """Return {relpath: info}; stats and xattrs only (no file content yet).

    Every entry is reached through its parent directory's fd (/proc/self/fd/N/name), never
    through root + relpath, so trees whose paths are longer than PATH_MAX compare too.
    """
    res = {}
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def visit(rel, pfd, name):
        if pfd is None:
            p, st = "/proc/self/fd/%d/." % rootfd, os.fstat(rootfd)
        else:
            p = "/proc/self/fd/%d/%s" % (pfd, name)
            st = os.lstat(name, dir_fd=pfd)
        info = {"st": st, "type": ftype(st.st_mode), "xattr": xattrs(p)}
        if stat.S_ISLNK(st.st_mode):
            info["target"] = os.readlink(name, dir_fd=pfd)
        res[rel] = info
        if stat.S_ISDIR(st.st_mode):
            fd = rootfd if pfd is None else os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                                    dir_fd=pfd)
            try:
                for child in sorted(os.listdir(fd)):
                    if child in excludes:
                        continue
                    visit(child if rel == "." else rel + "/" + child, fd, child)
            finally:
                if fd != rootfd:
                    os.close(fd)

    try:
        visit(".", None, None)
    finally:
        os.close(rootfd)
    return res


def open_rel(root, rel, flags):
    """Open root/rel one component at a time (paths may exceed PATH_MAX), never following a symlink."""
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def digest(root, rel):
    h = hashlib.sha256()
    try:
        fd = open_rel(root, rel, os.O_RDONLY | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = open_rel(root, rel, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def link_groups(tree):
    """Hard-link groups: frozenset of paths per inode that has more than one path here."""
    by_ino = {}
    for rel, i in tree.items():
        if i["type"] == "dir":
            continue
        by_ino.setdefault((i["st"].st_dev, i["st"].st_ino), []).append(rel)
    return {frozenset(v) for v in by_ino.values() if len(v) > 1}


def compare(a, b, excludes, times_for, mtime_all=True):
    diffs = {p: [] for p in PROPS}
    ta, tb = scan(a, excludes), scan(b, excludes)
    if times_for:
        for rel in sorted(times_for):
            if rel not in ta or rel not in tb:
                diffs["times"].append("%s: listed in --times but missing from %s" %
                                      (rel, a if rel not in ta else b))
    for rel in sorted(set(ta) | set(tb)):
        if rel not in ta or rel not in tb:
            diffs["entries"].append("%s: only in %s" % (rel, a if rel in ta else b))
            continue
        ia, ib = ta[rel], tb[rel]
        sa, sb = ia["st"], ib["st"]
        if ia["type"] != ib["type"]:
            diffs["type"].append("%s: %s vs %s" % (rel, ia["type"], ib["type"]))
            continue
        if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            diffs["mode"].append("%s: %04o vs %04o" % (rel, stat.S_IMODE(sa.st_mode), stat.S_IMODE(sb.st_mode)))
        if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs["owner"].append("%s: %d:%d vs %d:%d" % (rel, sa.st_uid, sa.st_gid, sb.st_uid, sb.st_gid))
        if ia["type"] in ("file", "symlink") and sa.st_size != sb.st_size:
            diffs["size"].append("%s: %d vs %d" % (rel, sa.st_size, sb.st_size))
        if ia["type"] in ("chardev", "blockdev") and sa.st_rdev != sb.st_rdev:
            diffs["rdev"].append("%s: %d:%d vs %d:%d" % (rel, os.major(sa.st_rdev), os.minor(sa.st_rdev),
                                                       os.major(sb.st_rdev), os.minor(sb.st_rdev)))
        if ia["type"] == "symlink" and ia["target"] != ib["target"]:
            diffs["symlink"].append("%s: %r vs %r" % (rel, ia["target"], ib["target"]))
        if sa.st_nlink != sb.st_nlink:
            diffs["nlink"].append("%s: %d vs %d" % (rel, sa.st_nlink, sb.st_nlink))
        xa = {k: v for k, v in ia["xattr"].items() if k not in ACL_NAMES}
        xb = {k: v for k, v in ib["xattr"].items() if k not in ACL_NAMES}
        if xa != xb:
            keys = sorted(k for k in set(xa) | set(xb) if xa.get(k) != xb.get(k))
            diffs["xattr"].append("%s: %s" % (rel, ", ".join(
                "%s=%r/%r" % (k, xa.get(k), xb.get(k)) for k in keys)))
        for n in ACL_NAMES:
            if ia["xattr"].get(n) != ib["xattr"].get(n):
                diffs["acl"].append("%s: %s %s vs %s" % (rel, n, "set" if n in ia["xattr"] else "unset",
                                                         "set" if n in ib["xattr"] else "unset"))
        if mtime_all and sa.st_mtime_ns != sb.st_mtime_ns:
            diffs["mtime"].append("%s: %d vs %d" % (rel, sa.st_mtime_ns, sb.st_mtime_ns))
        if times_for is None or rel in times_for:
            if sa.st_mtime_ns != sb.st_mtime_ns:
                diffs["times"].append("%s: mtime %d vs %d" % (rel, sa.st_mtime_ns, sb.st_mtime_ns))
            if sa.st_atime_ns != sb.st_atime_ns:
                diffs["times"].append("%s: atime %d vs %d" % (rel, sa.st_atime_ns, sb.st_atime_ns))
    # Content last: every stat above was taken before any read.
    for rel in sorted(set(ta) & set(tb)):
        if ta[rel]["type"] == "file" == tb[rel]["type"]:
            da, db = digest(a, rel), digest(b, rel)
            if da != db:
                diffs["content"].append("%s: sha256 %s.. vs %s.." % (rel, da[:12], db[:12]))
    ga, gb = link_groups(ta), link_groups(tb)
    for g in sorted(ga ^ gb, key=lambda s: sorted(s)):
        diffs["hardlinks"].append("group %s only in %s" % (sorted(g), a if g in ga else b))
    return diffs, len(ta), len(tb)


def main():
    # one fd per directory level is open while a tree is walked, and paths may nest deeply
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    ap = argparse.ArgumentParser(description="compare two directory trees")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--times", default="none", help="all | none | FILE listing relative paths")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--no-mtime", action="store_true", help="do not compare every path's mtime")
    ap.add_argument("--max", type=int, default=20, help="differences printed per property")
    ap.add_argument("--props", default=",".join(PROPS), help="comma-separated properties to compare")
    args = ap.parse_args()
    props = [p for p in args.props.split(",") if p]
    bad = [p for p in props if p not in PROPS]
    if bad or not props:
        print("treecmp: unknown property %s (known: %s)" % (",".join(bad) or "(none given)", " ".join(PROPS)),
              file=sys.stderr)
        return 2
    if args.times == "all":
        times_for = None
    elif args.times == "none":
        times_for = set()
    else:
        with open(args.times) as f:
            times_for = {os.path.normpath(l.strip()) for l in f if l.strip()}
    for side in (args.a, args.b):
        if not os.path.isdir(side):
            print("treecmp: %s: not a directory" % side, file=sys.stderr)
            return 2
    try:
        diffs, na, nb = compare(args.a, args.b, set(args.exclude), times_for,
                                    not args.no_mtime)
    except OSError as e:
        print("treecmp: %s" % e, file=sys.stderr)
        return 2
    total = sum(len(diffs[p]) for p in props)
    if args.summary:
        for p in props:
            d = diffs[p]
            print("%s\t%s\t%d\t%s" % (p, "FAIL" if d else "ok", len(d), d[0] if d else ""))
    for p in props:
        for d in diffs[p][:args.max]:
            print("# %s: %s" % (p, d))
        if len(diffs[p]) > args.max:
            print("# %s: ... %d more" % (p, len(diffs[p]) - args.max))
    print("# treecmp: %d entries vs %d entries, %d differences" % (na, nb, total))
    return 1 if total else 0


if __name__ == "__main__":
    try:
        rc = main()
    except SystemExit:
        raise
    except BaseException as e:  # a crash must not read as "1 = different" with nothing printed
        print("treecmp: internal error: %r" % e, file=sys.stderr)
        rc = 2
    sys.exit(rc)
