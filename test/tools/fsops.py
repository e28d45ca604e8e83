#!/usr/bin/env python3
"""fsops: the filesystem workloads of the mirror scenario tests, runnable on any directory.

  fsops.py mixed DIR --times-out FILE
      Every operation an application can do (issue 4 item 1), in a fixed order, with
      checks of the results as seen through DIR. Prints "op<TAB>ok|FAIL<TAB>detail" per
      operation group; exits 1 if any failed. FILE receives the relative paths whose
      mtime/atime were set with utimensat (ns) and not touched afterwards.
  fsops.py perms-setup DIR
      As root: a fixture of dirs/files with various owners/modes for the perms workload.
  fsops.py perms DIR
      As an unprivileged user (e.g. setpriv --reuid 65534 --regid 65534 --groups 1234):
      tries operations and prints "op<TAB>outcome<TAB>uid:gid mode" for each, where outcome
      is OK or the errno name. Run on a mirror and on a plain dir: the outputs must match.
"""
import ctypes
import errno
import os
import stat
import subprocess
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 0x10


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def pattern(seed, n):
    """Deterministic bytes so content errors show up as differences, not as equal zeros."""
    out = bytearray(n)
    x = (seed * 2654435761) & 0xffffffff
    for i in range(0, n, 4):
        x = (x * 1103515245 + 12345) & 0xffffffff
        out[i:i + 4] = x.to_bytes(4, "little")[:min(4, n - i)]
    return bytes(out)


def wfile(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def rfile(path):
    with open(path, "rb") as f:
        return f.read()


class Runner:
    def __init__(self):
        self.failed = 0

    def step(self, name, fn):
        try:
            detail = fn() or ""
            print("%s\tok\t%s" % (name, detail), flush=True)
        except Exception as e:  # report and go on: later steps are independent enough
            self.failed += 1
            print("%s\tFAIL\t%s: %s" % (name, type(e).__name__, e), flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_errno(eno, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        expect(e.errno == eno, "expected %s, got %s" % (errno.errorcode[eno], errno.errorcode.get(e.errno)))
        return
    raise AssertionError("expected %s, call succeeded" % errno.errorcode[eno])


def mixed(d, times_out):
    r = Runner()
    J = lambda *p: os.path.join(d, *p)
    times = []

    def dirs():
        for p in ("d1", "d1/sub", "d1/sub/deep", "d2", "d3", "dx", "emptyme"):
            os.mkdir(J(p), 0o755)
        os.mkdir(J("d700"), 0o700)
        expect_errno(errno.EEXIST, os.mkdir, J("d1"))
    r.step("mkdir", dirs)

    def creates():
        wfile(J("f_trunc"), pattern(1, 10000))
        wfile(J("f_trunc"), b"short after O_TRUNC\n")  # O_TRUNC over existing content
        expect(rfile(J("f_trunc")) == b"short after O_TRUNC\n", "O_TRUNC content")
        fd = os.open(J("f_excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, b"exclusive\n")
        os.close(fd)
        expect_errno(errno.EEXIST, os.open, J("f_excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        for i in range(3):
            wfile(J("f_app"), b"append %d\n" % i, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        expect(rfile(J("f_app")) == b"append 0\nappend 1\nappend 2\n", "O_APPEND content")
        for i in range(40):  # many small files in a subdir
            wfile(J("d3", "small%02d" % i), pattern(100 + i, 37 * i + 1))
    r.step("create_trunc_excl_append", creates)

    def writes():
        fd = os.open(J("f_rand"), os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, pattern(2, 1 << 20), 0)                 # one 1 MiB write
        os.pwrite(fd, b"X" * 4096, 8192)                      # overwrite in the middle
        os.pwrite(fd, b"tail", (3 << 20) + 17)                # beyond EOF: sparse gap
        os.pwrite(fd, pattern(3, 3 * (1 << 20)), 5 << 20)     # 3 MiB in one call (split by FUSE)
        os.fsync(fd)
        os.fdatasync(fd)
        os.close(fd)
        expect(os.stat(J("f_rand")).st_size == (8 << 20), "size after writes")
        data = rfile(J("f_rand"))
        expect(data[8192:8192 + 4096] == b"X" * 4096 and data[(3 << 20) + 17:(3 << 20) + 21] == b"tail",
               "read back")
    r.step("write_pwrite_fsync", writes)

    def truncs():
        wfile(J("f_big"), pattern(4, 300000))
        os.truncate(J("f_big"), 100000)
        os.truncate(J("f_big"), 200000)  # grows with zeros
        fd = os.open(J("f_big"), os.O_RDWR)
        os.ftruncate(fd, 150001)
        os.close(fd)
        data = rfile(J("f_big"))
        expect(len(data) == 150001 and data[:100000] == pattern(4, 300000)[:100000]
               and data[100000:] == bytes(50001), "truncate content")
    r.step("truncate_ftruncate", truncs)

    def fallocs():
        fd = os.open(J("f_falloc"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, pattern(5, 1 << 20))
        fallocate(fd, 0, 1 << 20, 1 << 20)                                   # extend, allocated zeros
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 2 << 20, 1 << 20)                 # preallocate past EOF
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 65536)
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 200000, 5000)
        os.fsync(fd)
        os.close(fd)
        data = rfile(J("f_falloc"))
        expect(len(data) == 2 << 20, "size %d" % len(data))
        expect(data[4096:4096 + 65536] == bytes(65536), "punched range reads zeros")
        expect(data[200000:205000] == bytes(5000), "zeroed range reads zeros")
        expect(data[:4096] == pattern(5, 4096), "data before hole kept")
    r.step("fallocate_punch_zero", fallocs)

    def cfr():
        src = os.open(J("f_rand"), os.O_RDONLY)
        dst = os.open(J("f_copy"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        n = 0
        while n < (2 << 20):
            c = os.copy_file_range(src, dst, (2 << 20) - n, 4096 + n, 100 + n)
            if c == 0:
                break
            n += c
        os.close(src)
        os.close(dst)
        expect(rfile(J("f_copy"))[100:100 + (2 << 20)] == rfile(J("f_rand"))[4096:4096 + (2 << 20)],
               "copy_file_range content")
        return "copied %d bytes" % n
    r.step("copy_file_range", cfr)

    def nodes():
        os.mkfifo(J("d1", "fifo"), 0o640)
        os.mknod(J("d1", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(J("d1", "blk"), 0o600 | stat.S_IFBLK, os.makedev(7, 200))
        os.mknod(J("d1", "regnod"), 0o644 | stat.S_IFREG)
        expect(stat.S_ISFIFO(os.lstat(J("d1", "fifo")).st_mode), "fifo type")
        expect(os.lstat(J("d1", "null")).st_rdev == os.makedev(1, 3), "chardev rdev")
    r.step("mknod_fifo_dev", nodes)

    def links():
        os.symlink("f_app", J("sl_file"))
        os.symlink("nowhere/at/all", J("sl_dangling"))
        os.symlink("../d1/sub", J("d2", "sl_dir"))
        expect(os.readlink(J("sl_file")) == "f_app", "readlink")
        os.link(J("f_app"), J("d2", "hl_app"))
        os.link(J("f_app"), J("d1", "hl_app2"))
        os.link(J("f_app"), J("hl_app3"))
        os.unlink(J("hl_app3"))
        wfile(J("d2", "hl_app"), b"append 3\n", os.O_WRONLY | os.O_APPEND)  # via another name
        expect(os.stat(J("f_app")).st_nlink == 3, "nlink %d" % os.stat(J("f_app")).st_nlink)
        expect(rfile(J("f_app")).endswith(b"append 3\n"), "write through hard link")
        expect(os.stat(J("f_app")).st_ino == os.stat(J("d1", "hl_app2")).st_ino, "same inode")
    r.step("symlink_hardlink", links)

    def unlinks():
        os.unlink(J("f_excl"))
        expect_errno(errno.ENOENT, os.stat, J("f_excl"))
        # open-unlinked: written after unlink, must vanish everywhere
        fd = os.open(J("f_ou"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"before unlink\n")
        os.unlink(J("f_ou"))
        os.write(fd, pattern(6, 200000))
        os.fsync(fd)
        os.lseek(fd, 0, 0)
        expect(os.read(fd, 14) == b"before unlink\n", "read open-unlinked")
        os.ftruncate(fd, 1000)
        os.close(fd)
        # open-unlinked whose name is reused by a new file at once
        fd = os.open(J("f_reuse"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"old inode\n")
        os.unlink(J("f_reuse"))
        wfile(J("f_reuse"), b"new inode\n")
        os.write(fd, b"old inode again\n")
        os.close(fd)
        expect(rfile(J("f_reuse")) == b"new inode\n", "name reuse")
        # unlinking one name of a hard-linked file keeps the others
        os.rmdir(J("emptyme"))
        os.rmdir(J("d1", "sub", "deep"))
        expect_errno(errno.ENOTEMPTY, os.rmdir, J("d1"))
    r.step("unlink_openunlinked_rmdir", unlinks)

    def renames():
        wfile(J("r_a"), b"A\n")
        wfile(J("r_b"), b"B\n")
        wfile(J("r_c"), b"C\n")
        os.rename(J("f_trunc"), J("d2", "f_renamed"))             # across dirs
        os.rename(J("r_c"), J("r_b"))                             # replaces r_b
        expect(rfile(J("r_b")) == b"C\n", "rename replace")
        expect_errno(errno.EEXIST, renameat2, J("r_a"), J("r_b"), RENAME_NOREPLACE)
        renameat2(J("r_a"), J("r_a2"), RENAME_NOREPLACE)
        renameat2(J("r_a2"), J("r_b"), RENAME_EXCHANGE)           # file <-> file
        expect(rfile(J("r_b")) == b"A\n" and rfile(J("r_a2")) == b"C\n", "exchange files")
        wfile(J("dx", "inside"), b"in dx\n")
        renameat2(J("dx"), J("r_a2"), RENAME_EXCHANGE)            # dir <-> file
        expect(os.path.isdir(J("r_a2")) and os.path.isfile(J("dx")), "exchange dir/file")
        os.rename(J("d1", "sub"), J("d3", "moved_sub"))           # directory with content
        os.rename(J("d2", "hl_app"), J("d3", "hl_app_moved"))     # a hard link
        os.rename(J("sl_dangling"), J("d3", "sl_dangling"))       # a symlink
        os.rename(J("d1", "hl_app2"), J("d1", "hl_app2"))         # no-op onto itself
    r.step("rename_noreplace_exchange", renames)

    def modes():
        os.chmod(J("f_app"), 0o600)
        os.chmod(J("f_rand"), 0o751)
        os.chmod(J("f_copy"), 0o4755)
        os.chmod(J("d2"), 0o2775)
        os.chmod(J("d3"), 0o1777)
        os.chmod(J("d1", "fifo"), 0o666)
        expect(stat.S_IMODE(os.stat(J("d3")).st_mode) == 0o1777, "sticky")
    r.step("chmod", modes)

    def owners():
        os.chown(J("f_rand"), 1234, 5678)
        os.chown(J("d2"), 65534, 65534)
        os.chown(J("sl_file"), 4321, 4321, follow_symlinks=False)
        os.chown(J("d1", "null"), 0, 1234)
        os.chown(J("f_big"), -1, 4242)
        expect(os.lstat(J("sl_file")).st_uid == 4321, "lchown")
        # chown of a setuid file clears the setuid bit (non-root owner change)
        return "f_copy mode after chown: %o" % stat.S_IMODE(os.stat(J("f_copy")).st_mode)
    r.step("chown_lchown", owners)

    def xattrs():
        os.setxattr(J("f_rand"), "user.small", b"1")
        os.setxattr(J("f_rand"), "user.big", pattern(7, 3000))
        os.setxattr(J("f_rand"), "user.gone", b"remove me")
        os.removexattr(J("f_rand"), "user.gone")
        os.setxattr(J("f_rand"), "user.small", b"replaced", os.XATTR_REPLACE)
        expect_errno(errno.EEXIST, os.setxattr, J("f_rand"), "user.big", b"x", os.XATTR_CREATE)
        os.setxattr(J("d3"), "user.dir", b"on a dir")
        os.setxattr(J("f_big"), "trusted.root_only", b"t")
        os.setxattr(J("f_big"), "user.empty", b"")
        expect(os.getxattr(J("f_rand"), "user.small") == b"replaced", "getxattr")
        expect(sorted(os.listxattr(J("f_rand"))) == ["user.big", "user.small"], "listxattr")
    r.step("xattr_set_replace_remove", xattrs)

    def acls():
        subprocess.run(["setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", J("f_big")], check=True)
        subprocess.run(["setfacl", "-m", "u:4321:r-x", J("d1")], check=True)
        subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx,g::r-x,o::---", J("d1")], check=True)
        wfile(J("d1", "inherits_acl"), b"inherits default ACL\n", mode=0o666)
        os.mkdir(J("d1", "inherits_dir"), 0o777)
        subprocess.run(["setfacl", "-m", "u:1234:r--", J("f_copy")], check=True)
        subprocess.run(["setfacl", "-b", J("f_copy")], check=True)  # remove all again
        out = subprocess.run(["getfacl", "-cp", J("d1", "inherits_acl")], check=True,
                             capture_output=True, text=True).stdout
        expect("user:1234:rwx" in out, "default ACL inherited: %r" % out)
    r.step("posix_acl", acls)

    def syncs():
        fd = os.open(J("d3"), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)  # fsyncdir
        os.close(fd)
        fd = os.open(J("f_big"), os.O_RDWR)
        os.fdatasync(fd)
        os.fsync(fd)
        os.close(fd)
        os.sync()
        st = os.statvfs(d)
        expect(st.f_bsize > 0 and st.f_blocks > 0, "statfs")
    r.step("fsync_fsyncdir_statfs", syncs)

    def mmaps():
        # Writes through a shared mapping reach the daemon only by writeback (msync, munmap, fsync).
        import mmap
        fd = os.open(J("f_mmap"), os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fd, 256 * 1024)
        m = mmap.mmap(fd, 256 * 1024, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[0:65536] = pattern(8, 65536)
        m[200000:200010] = b"0123456789"
        m.flush()
        m[100:110] = b"after sync"  # left to munmap/close writeback, then fsync
        m.close()
        os.fsync(fd)
        os.close(fd)
        data = rfile(J("f_mmap"))
        expect(data[100:110] == b"after sync" and data[200000:200010] == b"0123456789", "mmap content")
    r.step("mmap_shared_write", mmaps)

    def sqlite():
        # A real application: SQLite in WAL mode (its -shm file is used through mmap).
        import sqlite3
        db = sqlite3.connect(J("app.db"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(20):
            with db:
                db.executemany("INSERT INTO t (v) VALUES (?)", [("row %d.%d" % (i, j),) for j in range(50)])
        with db:
            db.execute("DELETE FROM t WHERE id % 7 = 0")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        n = db.execute("SELECT count(*) FROM t").fetchone()[0]
        db.close()
        return "%d rows" % n
    r.step("sqlite_wal", sqlite)

    def edges():
        import socket
        os.mkdir(J("edge"))
        # odd but legal names: control characters, backslash, non-UTF-8 byte, 255 bytes
        for raw in (b"new\nline", b"tab\tand\\back", b"latin1-\xff\xfe", b"x" * 255, b" lead-space", b"-dash"):
            p = os.path.join(os.fsencode(J("edge")), raw)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, raw + b"\n")
            os.close(fd)
        # a unix socket node, and trusted xattrs on a symlink (root only; user.* is not allowed there)
        s = socket.socket(socket.AF_UNIX)
        s.bind(J("edge", "sock"))
        s.close()
        os.symlink("sock", J("edge", "sl"))
        os.setxattr(J("edge", "sl"), "trusted.on_link", b"v", follow_symlinks=False)
        # rename over a file that is still open for writing: later writes go to the old inode only
        wfile(J("edge", "victim"), b"victim v1\n")
        fd = os.open(J("edge", "victim"), os.O_WRONLY | os.O_APPEND)
        wfile(J("edge", "winner"), b"winner\n")
        os.rename(J("edge", "winner"), J("edge", "victim"))
        os.write(fd, b"written after being replaced\n")
        os.close(fd)
        expect(rfile(J("edge", "victim")) == b"winner\n", "rename over an open file")
        # a directory renamed while a file inside is open and written
        os.mkdir(J("edge", "movingdir"))
        fd = os.open(J("edge", "movingdir", "f"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"before move\n")
        os.rename(J("edge", "movingdir"), J("edge", "moveddir"))
        os.write(fd, b"after move\n")
        os.close(fd)
        expect(rfile(J("edge", "moveddir", "f")) == b"before move\nafter move\n", "write after dir rename")
        # chmod 000 while open for writing: the open descriptor keeps working
        fd = os.open(J("edge", "locked"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.chmod(J("edge", "locked"), 0)
        os.write(fd, b"still writable through the open fd\n")
        os.close(fd)
        expect_errno(errno.EINVAL, os.rename, J("edge", "moveddir"), J("edge", "moveddir", "inside"))
        # UTIME_OMIT: touch -a changes only atime, touch -m only mtime
        wfile(J("edge", "omit"), b"omit\n")
        os.utime(J("edge", "omit"), ns=(1500000000000000001, 1600000000000000002))
        subprocess.run(["touch", "-a", "-d", "2010-01-01 00:00:00.5", J("edge", "omit")], check=True)
        st = os.stat(J("edge", "omit"))
        expect(st.st_mtime_ns == 1600000000000000002, "UTIME_OMIT kept mtime")
        times.append("edge/omit")
    r.step("edge_names_types_renames", edges)

    def path_max():
        # A relative path of 4095 bytes (PATH_MAX - 1) under the mount: 15 directories of 255-byte
        # names, then a 255-byte file name. A file is renamed there, back, and there again; the
        # secondary must resolve it component by component (its whole path exceeds PATH_MAX).
        root = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            rel = "deep"
            os.mkdir(rel, 0o755, dir_fd=root)
            for i in range(14):
                rel += "/" + ("%02d" % i) * 127 + "p"
                os.mkdir(rel, 0o755, dir_fd=root)
            rel = rel.replace("deep", "d" * 255, 1)
            os.rename("deep", "d" * 255, src_dir_fd=root, dst_dir_fd=root)
            longp = rel + "/" + "f" * 255
            expect(len(longp) == 4095, "built a %d-byte path" % len(longp))
            fd = os.open("short", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=root)
            os.write(fd, b"at the end of a 4095-byte path\n")
            os.close(fd)
            os.rename("short", longp, src_dir_fd=root, dst_dir_fd=root)
            expect(os.stat(longp, dir_fd=root).st_size == 31, "stat of the 4095-byte path")
            os.rename(longp, "short", src_dir_fd=root, dst_dir_fd=root)
            os.rename("short", longp, src_dir_fd=root, dst_dir_fd=root)
            fd = os.open(longp, os.O_WRONLY | os.O_APPEND, dir_fd=root)
            os.write(fd, b"appended there\n")
            os.close(fd)
        finally:
            os.close(root)
        return "rename to a 4095-byte relative path, back, and there again"
    r.step("path_max_rename", path_max)

    def concurrent():
        # Racing writers on one file and racing renames onto one name: the secondary must end
        # in the primary's final state, which holds only if ops are sequenced in apply order.
        import random
        import threading
        os.mkdir(J("race"))
        wfile(J("race", "shared"), bytes(1 << 20))
        errs = []

        def writer(t):
            try:
                rnd = random.Random(t)
                fd = os.open(J("race", "shared"), os.O_WRONLY)
                for i in range(150):
                    off = rnd.randrange(0, (1 << 20) - 65536, 512)
                    os.pwrite(fd, pattern(1000 * t + i, rnd.choice((512, 4096, 65536))), off)
                    if i % 50 == 49:
                        os.ftruncate(fd, rnd.randrange(1 << 19, 1 << 20))
                os.close(fd)
            except Exception as e:
                errs.append(e)

        def renamer(t):
            try:
                for i in range(100):
                    p = J("race", "r%d" % t)
                    wfile(p, b"thread %d round %d\n" % (t, i))
                    os.rename(p, J("race", "target"))
                    if i % 10 == 0:
                        try:
                            os.link(J("race", "target"), J("race", "lnk%d_%d" % (t, i)))
                        except FileNotFoundError:
                            pass
            except Exception as e:
                errs.append(e)

        def appender(t):
            try:
                fd = os.open(J("race", "appended"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                for i in range(200):
                    os.write(fd, b"appender %d line %03d\n" % (t, i))
                os.close(fd)
            except Exception as e:
                errs.append(e)

        th = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
        th += [threading.Thread(target=renamer, args=(t,)) for t in range(4)]
        th += [threading.Thread(target=appender, args=(t,)) for t in range(4)]
        for x in th:
            x.start()
        for x in th:
            x.join()
        expect(not errs, "thread errors: %r" % errs[:3])
        expect(os.stat(J("race", "appended")).st_size == 4 * 200 * 20, "O_APPEND lines lost")
        return "6 writers x 150 pwrite/ftruncate, 4 renamers x 100 rename+link, 4 x 200 O_APPEND"
    r.step("concurrent_writes_renames", concurrent)

    def utimes():
        # last, so nothing touches these paths afterwards
        sets = [("f_rand", (1111111111, 123456789), (1222222222, 987654321)),
                ("d2/f_renamed", (1000000000, 1), (1000000001, 999999999)),
                ("d1/fifo", (1500000000, 5), (1500000001, 6)),
                ("sl_file", (1600000000, 7), (1600000001, 8)),
                ("d3", (1300000000, 42), (1300000001, 43)),
                ("d1", (1400000000, 44), (1400000001, 45))]
        for rel, (asec, ans), (msec, mns) in sets:
            os.utime(J(rel), ns=(asec * 10**9 + ans, msec * 10**9 + mns), follow_symlinks=False)
            st = os.lstat(J(rel))
            expect(st.st_mtime_ns == msec * 10**9 + mns, "%s mtime ns" % rel)
            times.append(rel)
        # UTIME_NOW style (None): replicated value must equal the primary's, not the peer's clock
        os.utime(J("f_app"))
        times.append("f_app")
        return "%d paths" % len(times)
    r.step("utimensat_ns", utimes)

    with open(times_out, "w") as f:
        for t in times:
            f.write(t + "\n")
    return 1 if r.failed else 0


# ---- permissions ----

def perms_setup(d):
    J = lambda *p: os.path.join(d, *p)
    os.chmod(d, 0o755)
    for p, mode, uid, gid in (("pub", 0o777, 0, 0), ("priv", 0o700, 0, 0), ("grp", 0o770, 0, 1234),
                              ("sticky", 0o1777, 0, 0), ("sgid", 0o2777, 0, 1234),
                              ("nob", 0o755, 65534, 65534)):
        os.mkdir(J(p))
        os.chown(J(p), uid, gid)
        os.chmod(J(p), mode)
    for p, mode, uid, gid in (("ro", 0o644, 0, 0), ("rw", 0o666, 0, 0), ("sticky/rootfile", 0o666, 0, 0),
                              ("priv/secret", 0o600, 0, 0), ("nob/mine", 0o644, 65534, 65534),
                              ("grp/gfile", 0o660, 0, 1234)):
        wfile(J(p), b"fixture %s\n" % p.encode())
        os.chown(J(p), uid, gid)
        os.chmod(J(p), mode)
    # a directory with a default ACL: new entries take their mode from it, not from the umask
    os.mkdir(J("dacl"))
    os.chmod(J("dacl"), 0o777)
    subprocess.run(["setfacl", "-d", "-m", "u::rwx,g::rwx,o::rwx,u:1234:r-x", J("dacl")], check=True)


def perms(d):
    J = lambda *p: os.path.join(d, *p)
    os.umask(0o022)

    def run(name, fn, *args, show=None):
        try:
            fn(*args)
            res = "OK"
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e.errno))
        desc = "-"
        if show:
            try:
                st = os.lstat(J(show))
                desc = "%d:%d %05o" % (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
            except OSError as e:
                desc = "stat:" + errno.errorcode.get(e.errno, str(e.errno))
        print("%s\t%s\t%s" % (name, res, desc), flush=True)

    def create(p, mode=0o666, flags=os.O_WRONLY | os.O_CREAT):
        os.close(os.open(J(p), flags, mode))

    def write(p, data=b"data\n", flags=os.O_WRONLY | os.O_APPEND):
        fd = os.open(J(p), flags)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    run("create pub/n1", create, "pub/n1", 0o640, show="pub/n1")
    run("create pub/n1 O_EXCL", create, "pub/n1", 0o640, os.O_WRONLY | os.O_CREAT | os.O_EXCL, show="pub/n1")
    run("create priv/x", create, "priv/x", show="priv/x")
    run("read priv/secret", lambda: rfile(J("priv/secret")))
    run("list priv", os.listdir, J("priv"))
    run("create grp/x (supplementary group)", create, "grp/x", show="grp/x")
    run("append grp/gfile", write, "grp/gfile", show="grp/gfile")
    run("create sgid/f (inherits gid)", create, "sgid/f", 0o644, show="sgid/f")
    run("mkdir sgid/d (inherits setgid)", os.mkdir, J("sgid/d"), 0o755, show="sgid/d")
    run("write ro", write, "ro", show="ro")
    run("write rw", write, "rw", show="rw")
    run("O_TRUNC ro", create, "ro", 0o666, os.O_WRONLY | os.O_TRUNC, show="ro")
    run("truncate rw", os.truncate, J("rw"), 3, show="rw")
    run("truncate ro", os.truncate, J("ro"), 3, show="ro")
    run("chmod ro", os.chmod, J("ro"), 0o777, show="ro")
    run("chmod pub/n1", os.chmod, J("pub/n1"), 0o600, show="pub/n1")
    run("chmod g+s pub/n1 (not in group 4321)", lambda: (os.chown(J("pub/n1"), -1, -1),
                                                         os.chmod(J("pub/n1"), 0o2755)), show="pub/n1")
    run("chown pub/n1 to root", os.chown, J("pub/n1"), 0, -1, show="pub/n1")
    run("chgrp pub/n1 to 4321 (not member)", os.chown, J("pub/n1"), -1, 4321, show="pub/n1")
    run("chgrp pub/n1 to 1234 (member)", os.chown, J("pub/n1"), -1, 1234, show="pub/n1")
    run("create pub/suid", create, "pub/suid", 0o755, show="pub/suid")
    run("chmod 4755 pub/suid", os.chmod, J("pub/suid"), 0o4755, show="pub/suid")
    run("write pub/suid (clears setuid)", write, "pub/suid", show="pub/suid")
    run("unlink sticky/rootfile", os.unlink, J("sticky/rootfile"), show="sticky/rootfile")
    run("rename sticky/rootfile", os.rename, J("sticky/rootfile"), J("sticky/moved"), show="sticky/rootfile")
    run("create sticky/mine", create, "sticky/mine", show="sticky/mine")
    run("unlink sticky/mine", os.unlink, J("sticky/mine"), show="sticky/mine")
    run("mkdir priv/d", os.mkdir, J("priv/d"), show="priv/d")
    run("mkdir pub/nd 0700", os.mkdir, J("pub/nd"), 0o700, show="pub/nd")
    run("rmdir priv", os.rmdir, J("priv"), show="priv")
    run("unlink nob/mine", os.unlink, J("nob/mine"), show="nob/mine")
    run("utime ro explicit", os.utime, J("ro"), (1, 1), show="ro")
    run("utime ro now", os.utime, J("ro"), None, show="ro")
    run("utime rw now", os.utime, J("rw"), None, show="rw")
    run("utime rw explicit", os.utime, J("rw"), (1, 1), show="rw")
    run("utime pub/n1 explicit (owner)", lambda: os.utime(J("pub/n1"), ns=(5, 1000000007)), show="pub/n1")
    run("setxattr user ro", os.setxattr, J("ro"), "user.x", b"1", show="ro")
    run("setxattr user pub/n1", os.setxattr, J("pub/n1"), "user.x", b"1", show="pub/n1")
    run("setxattr trusted pub/n1", os.setxattr, J("pub/n1"), "trusted.x", b"1", show="pub/n1")
    run("setfacl pub/n1", lambda: subprocess.run(["setfacl", "-m", "u:1234:rw", J("pub/n1")], check=True,
                                                 stderr=subprocess.DEVNULL) and None, show="pub/n1")
    run("link ro (protected_hardlinks)", os.link, J("ro"), J("pub/ro_link"), show="pub/ro_link")
    run("link pub/n1", os.link, J("pub/n1"), J("pub/n1_link"), show="pub/n1_link")
    run("symlink pub/sl", os.symlink, "../ro", J("pub/sl"), show="pub/sl")
    run("mkfifo pub/fifo", os.mkfifo, J("pub/fifo"), 0o644, show="pub/fifo")
    run("mknod chardev pub/dev", os.mknod, J("pub/dev"), 0o644 | stat.S_IFCHR, os.makedev(1, 3), show="pub/dev")
    run("rename pub/n1 -> nob/n1", os.rename, J("pub/n1"), J("nob/n1"), show="nob/n1")
    run("rename pub/nd -> pub/nd2", os.rename, J("pub/nd"), J("pub/nd2"), show="pub/nd2")
    run("exchange pub/fifo <-> pub/sl", renameat2, J("pub/fifo"), J("pub/sl"), RENAME_EXCHANGE, show="pub/sl")
    run("rename rw over ro", os.rename, J("rw"), J("ro"), show="ro")
    run("create dacl/f 0666 (default ACL, umask 022)", create, "dacl/f", 0o666, show="dacl/f")
    run("mkdir dacl/d 0777 (default ACL, umask 022)", os.mkdir, J("dacl/d"), 0o777, show="dacl/d")
    run("mkfifo dacl/p 0666 (default ACL, umask 022)", os.mkfifo, J("dacl/p"), 0o666, show="dacl/p")
    run("statfs", os.statvfs, d)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "mixed":
        out = sys.argv[4] if len(sys.argv) >= 5 and sys.argv[3] == "--times-out" else os.devnull
        return mixed(sys.argv[2], out)
    if len(sys.argv) == 3 and sys.argv[1] == "perms-setup":
        return perms_setup(sys.argv[2]) or 0
    if len(sys.argv) == 3 and sys.argv[1] == "perms":
        return perms(sys.argv[2]) or 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
