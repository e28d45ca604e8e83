#!/usr/bin/env bash
# module_archive: `skctl module pack/install/list/remove` as an operator uses them, and hostile
# archives (links, devices, "..", absolute names, duplicates, oversize, too many entries, control
# characters, a bad userconfig.json) refused with the entry and the rule, leaving the modules
# folder as it was and nothing written outside it (invariant 7). No network: one node's files
# under a --root folder.
set -u
source "$SK_SRC/test/cluster/lib.sh"
SKCTL=$SK_BUILD/cli/skctl
[ -x "$SKCTL" ] || { echo "Bail out! skctl not built at $SKCTL"; exit 1; }
PY=$(command -v python3) || { echo "Bail out! python3 missing"; exit 1; }
T=$(mktemp -d /tmp/skmodarch.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
A=$T/a # node A: the module is installed here first
B=$T/b # node B: archives are installed here
MODS=$B/var/lib/steadykit/modules
mkdir -p "$A/var/lib/steadykit/modules" "$A/etc/steadykit" "$B/etc/steadykit" "$T/outside"
cp "$SK_SRC/examples/cluster.json" "$A/etc/steadykit/" && cp "$SK_SRC/examples/cluster.json" "$B/etc/steadykit/"
cp -r "$SK_SRC/examples/mirror" "$A/var/lib/steadykit/modules/" || { echo "Bail out! example module"; exit 1; }
(umask 077 && head -c 32 /dev/urandom | base64 >"$B/etc/steadykit/secret") || { echo "Bail out! secret"; exit 1; }

# 1. pack on A, install on B: the same files, modes kept, owner root, listed, the agent's check passes
out=$("$SKCTL" --root "$A" module pack -m mirror -o "$T/mirror.tar.gz" 2>&1)
if [ -s "$T/mirror.tar.gz" ]; then sk_ok "pack writes the archive"; else sk_not_ok "pack writes the archive"; sk_diag "$out"; fi
out=$("$SKCTL" --root "$B" module install "$T/mirror.tar.gz" 2>&1)
if [ $? = 0 ] && diff -r "$A/var/lib/steadykit/modules/mirror" "$MODS/mirror" >/dev/null; then
	sk_ok "install on another node gives the same files"
else
	sk_not_ok "install on another node gives the same files"
	sk_diag "$out"
fi
if [ "$(stat -c %a "$MODS/mirror/bin/start_prim") $(stat -c %a "$MODS/mirror/userconfig.json") $(stat -c %a "$MODS/mirror")" = "755 644 755" ]; then
	sk_ok "modes: scripts 0755, other files 0644, folders 0755"
else
	sk_not_ok "modes: scripts 0755, other files 0644, folders 0755"
fi
if "$SKCTL" --root "$B" module list | grep -q '^mirror .*nodes node1,node2'; then sk_ok "list shows it"; else sk_not_ok "list shows it"; fi
out=$("$SK_BUILD/agent/skagentd" --root "$B" --node node1 --check 2>&1)
if [ $? = 0 ]; then sk_ok "the agent's --check accepts the installed module"; else sk_not_ok "the agent's --check accepts the installed module"; sk_diag "$out"; fi
if ! "$SKCTL" --root "$B" module install "$T/mirror.tar.gz" >/dev/null 2>&1 &&
	"$SKCTL" --root "$B" module install "$T/mirror.tar.gz" 2>&1 | grep -q -- '--replace'; then
	sk_ok "installing over an installed module is refused, naming --replace"
else
	sk_not_ok "installing over an installed module is refused, naming --replace"
fi
echo "# changed" >>"$A/var/lib/steadykit/modules/mirror/bin/stop_prim"
rm -f "$T/mirror.tar.gz"
"$SKCTL" --root "$A" module pack -m mirror -o "$T/mirror.tar.gz" >/dev/null 2>&1
if "$SKCTL" --root "$B" module install --replace "$T/mirror.tar.gz" >/dev/null 2>&1 &&
	grep -q '# changed' "$MODS/mirror/bin/stop_prim"; then
	sk_ok "--replace puts the new version in place"
else
	sk_not_ok "--replace puts the new version in place"
fi
if [ -z "$(ls -A "$MODS" | grep -v '^mirror$')" ]; then sk_ok "no private folder left behind"; else sk_not_ok "no private folder left behind ($(ls -A "$MODS"))"; fi
# one top folder (tar czf web.tgz mirror/) is accepted too
(cd "$A/var/lib/steadykit/modules" && tar czf "$T/top.tgz" mirror)
"$SKCTL" --root "$B" module remove -m mirror >/dev/null 2>&1
if [ ! -e "$MODS/mirror" ] && (umask 077 && "$SKCTL" --root "$B" module install "$T/top.tgz" >/dev/null 2>&1) &&
	[ -x "$MODS/mirror/bin/start_prim" ]; then
	sk_ok "remove, then an archive of the module's folder (one top folder) installs"
else
	sk_not_ok "remove, then an archive of the module's folder (one top folder) installs"
fi
m=$(stat -c %a "$MODS/mirror" "$MODS/mirror/bin" "$MODS/mirror/bin/stop_prim" "$MODS/mirror/userconfig.json" 2>&1 | tr '\n' ' ')
if [ "$m" = "755 755 755 644 " ]; then sk_ok "modes whatever the umask (077 here)"; else sk_not_ok "modes whatever the umask (077 here): $m"; fi

# 2. hostile archives: each refused with the entry and the rule; nothing changes
snap() { (cd "$B" && find . -printf '%p %y %m %s\n' | sort; cd "$T/outside" && find . | sort); }
"$PY" - "$T" "$A/var/lib/steadykit/modules/mirror" <<'EOF'
import io, os, sys, tarfile, zipfile
t, mod = sys.argv[1], sys.argv[2]
cfg = open(os.path.join(mod, "userconfig.json"), "rb").read()
good = [("userconfig.json", cfg, 0o644)] + [
    ("bin/" + n, open(os.path.join(mod, "bin", n), "rb").read(), 0o755) for n in sorted(os.listdir(os.path.join(mod, "bin")))]

def tar(name, extra, base=good, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(os.path.join(t, name + ".tgz"), "w:gz", format=fmt) as z:
        for n, data, mode in base:
            i = tarfile.TarInfo(n); i.size = len(data); i.mode = mode
            z.addfile(i, io.BytesIO(data))
        for i, data in extra:
            z.addfile(i, io.BytesIO(data) if data is not None else None)

def info(name, type=tarfile.REGTYPE, size=0, **kw):
    i = tarfile.TarInfo(name); i.type = type; i.size = size
    for k, v in kw.items(): setattr(i, k, v)
    return i

outside = os.path.join(t, "outside")
tar("dotdot", [(info("../../outside/x", size=2), b"x\n")])
tar("dotdot2", [(info("bin/../../x", size=2), b"x\n")])
tar("absolute", [(info(outside + "/x", size=2), b"x\n")])
tar("symlink", [(info("bin/out", tarfile.SYMTYPE, linkname=outside), None)])
tar("symlink_dir", [(info("data", tarfile.SYMTYPE, linkname=outside), None), (info("data/x", size=2), b"x\n")])
tar("hardlink", [(info("bin/hl", tarfile.LNKTYPE, linkname="userconfig.json"), None)])
tar("chardev", [(info("bin/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)])
tar("fifo", [(info("bin/fifo", tarfile.FIFOTYPE), None)])
tar("twice", [(info("userconfig.json", size=len(cfg)), cfg)])
tar("bigfile", [(info("blob", size=17 << 20), bytes(17 << 20))])
tar("bigtotal", [(info("blob%d" % k, size=15 << 20), bytes(15 << 20)) for k in range(5)])
tar("many", [(info("f%04d" % k, size=0), b"") for k in range(1100)])
tar("control", [(info("bin/evil\x1b[2J", size=2), b"x\n")])
tar("deep", [(info("/".join("d%d" % k for k in range(10)) + "/x", size=2), b"x\n")])
tar("file_as_dir", [(info("notes", size=2), b"x\n"), (info("notes/x", size=2), b"x\n")])
tar("noconfig", [], base=good[1:])
tar("badconfig", [], base=[("userconfig.json", b'{"name":"mirror","kind":"mirror","id":1,"nodes":["node1","node9"],'
                            b'"replication":{"dirs":["/srv/x"]}}', 0o644)] + good[1:])
tar("noscript", [], base=[g for g in good if g[0] != "bin/start_prim"])
tar("noexec", [], base=[(n, d, 0o644 if n == "bin/start_prim" else m) for n, d, m in good])
tar("setuid", [], base=[(n, d, 0o4755 if n == "bin/start_prim" else m) for n, d, m in good])
with zipfile.ZipFile(os.path.join(t, "zipdotdot.tgz"), "w") as z:
    for n, data, mode in good:
        z.writestr(n, data)
    z.writestr("../../outside/z", b"z\n")
open(os.path.join(t, "garbage.tgz"), "wb").write(os.urandom(4096))
EOF
snap >"$T/before"
# refused CASE PATTERN: install fails, its error matches PATTERN, nothing changed
refused() {
	local c=$1 pat=$2 out rc=0
	out=$("$SKCTL" --root "$B" module install --replace "$T/$c.tgz" 2>&1) || rc=$?
	if [ "$rc" != 0 ] && printf '%s\n' "$out" | grep -q -- "$pat"; then
		sk_ok "$c refused: $(printf '%s\n' "$out" | head -n 1 | sed "s|$T/||")"
	else
		sk_not_ok "$c refused (exit $rc, want /$pat/)"
		sk_diag "$out"
	fi
	snap >"$T/after"
	if cmp -s "$T/before" "$T/after"; then
		sk_ok "$c: nothing changed, nothing written outside"
	else
		sk_not_ok "$c: nothing changed, nothing written outside"
		sk_diag "$(diff "$T/before" "$T/after" | head -n 10)"
		snap >"$T/before"
	fi
}
refused dotdot '\.\./\.\./outside/x: a "." or ".." component'
refused dotdot2 'bin/\.\./\.\./x: a "." or ".." component'
refused absolute 'an absolute name'
refused symlink 'bin/out: a symbolic link'
refused symlink_dir 'data: a symbolic link'
refused hardlink 'bin/hl: a hard link'
refused chardev 'bin/null: a character device'
refused fifo 'bin/fifo: a FIFO'
refused twice 'userconfig.json: this name appears twice'
refused bigfile 'blob: a file larger than 16 MiB'
refused bigtotal 'more than 64 MiB'
refused many 'more than 1024 entries'
refused control 'bin/evil?\[2J: a control character'
refused deep 'more than 8 levels'
refused file_as_dir 'notes/x: a folder of its name is a file'
refused noconfig 'userconfig.json: missing'
refused badconfig 'nodes\[1\]\|node9'
refused noscript 'scripts.start_prim: listed, but bin/start_prim is not in the archive'
refused noexec 'bin/start_prim is not in the archive as an executable file'
refused zipdotdot '\.\./\.\./outside/z: a "." or ".." component'
refused garbage 'not a module archive'
if "$SKCTL" --root "$B" module install --replace "$T/setuid.tgz" >/dev/null 2>&1 &&
	[ "$(stat -c %a "$MODS/mirror/bin/start_prim")" = 755 ]; then
	sk_ok "a set-id bit in the archive is dropped (0755)"
else
	sk_not_ok "a set-id bit in the archive is dropped (0755, got $(stat -c %a "$MODS/mirror/bin/start_prim" 2>&1))"
fi

# pack refuses what install would: a link in the module's folder, and writes nothing
ln -s /etc "$A/var/lib/steadykit/modules/mirror/bin/etc"
out=$("$SKCTL" --root "$A" module pack -m mirror -o "$T/linked.tgz" 2>&1)
if [ $? = 1 ] && grep -q 'bin/etc: a symbolic link' <<<"$out" && [ ! -e "$T/linked.tgz" ]; then
	sk_ok "pack refuses a symbolic link in the module's folder, writes nothing"
else
	sk_not_ok "pack refuses a symbolic link in the module's folder, writes nothing"
	sk_diag "$out"
fi
rm -f "$A/var/lib/steadykit/modules/mirror/bin/etc"
out=$("$SKCTL" --root "$A" module pack -m mirror -o "$T/mirror.tar.gz" 2>&1)
if [ $? = 1 ] && grep -q 'already exists' <<<"$out"; then sk_ok "pack never overwrites a file"; else sk_not_ok "pack never overwrites a file"; sk_diag "$out"; fi

# 3. bad arguments: a clear error, exit 2, nothing touched
for args in "module" "module install" "module pack" "module pack -m ../../etc" "module remove -m Mirror" \
	"module install a b" "module frob" "module list -m x"; do
	# shellcheck disable=SC2086
	out=$("$SKCTL" --root "$B" $args 2>&1)
	rc=$?
	if [ "$rc" = 2 ] && [ -n "$out" ]; then sk_ok "skctl $args: exit 2 with a message"; else sk_not_ok "skctl $args: exit 2 with a message (exit $rc)"; sk_diag "$out"; fi
done
# bash completion of the module commands (module names from the folders: no agent here)
sk_check "completion: module" test "$(sk_complete_words skctl mod | tr '\n' ' ')" = "module "
sk_check "completion: module's commands" \
	test "$(sk_complete_words skctl module "" | sort | tr '\n' ' ')" = "install list pack remove "
sk_check "completion: module remove -m names the installed modules" \
	test "$(sk_complete_words skctl --root "$B" module remove -m "" | tr '\n' ' ')" = "mirror "
out=$("$SKCTL" --root "$B" module remove -m nosuch 2>&1)
if [ $? = 1 ] && printf '%s' "$out" | grep -q 'not installed'; then sk_ok "remove of a module not installed says so"; else sk_not_ok "remove of a module not installed says so"; sk_diag "$out"; fi
sk_done
