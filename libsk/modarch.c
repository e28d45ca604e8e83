/* libsk/modarch.c: module archives installed beneath a private folder with every entry checked, and packed from an installed module (libarchive). */
#include "modarch.h"
#include "conf_json.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX ".install-"

/* err: file (the archive or folder), path (the entry, control characters as '?'), message. */
__attribute__((format(printf, 5, 6)))
static int fail(struct sk_conf_err *err, int rc, const char *file, const char *entry,
		const char *fmt, ...)
{
	va_list ap;

	snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
	snprintf(err->path, sizeof(err->path), "%s", entry ? entry : "");
	sk_text_clean(err->path, strlen(err->path), "");
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* dfd/name and everything under it, links never followed (our own private tree). */
static void rm_tree_at(int dfd, const char *name, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT || depth > 64)
		return;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree_at(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	unlinkat(dfd, name, AT_REMOVEDIR);
}

/*
 * An entry's name as a relative path of at most SK_MODARCH_MAX_DEPTH components, into out
 * (leading "./" and one trailing '/' dropped). NULL when acceptable ("" for the top folder
 * itself), else the rule it breaks.
 */
static const char *entry_rule(const char *p, char *out, size_t cap)
{
	size_t n, depth = 0;

	while (p[0] == '.' && p[1] == '/')
		p += 2;
	n = strlen(p);
	if (n > SK_MODARCH_MAX_NAME || n >= cap)
		return "a name longer than 512 bytes";
	if (p[0] == '/')
		return "an absolute name (entries are named from the module's folder)";
	memcpy(out, p, n + 1);
	if (n && out[n - 1] == '/')
		out[--n] = '\0';
	if (!n || !strcmp(out, "."))
		return out[0] = '\0', NULL;
	for (const char *c = out; *c; c++)
		if (!sk_text_char_ok((unsigned char)*c, ""))
			return "a control character in its name";
	for (const char *s = out;;) {
		const char *e = strchr(s, '/');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == 0)
			return "an empty component in its name (\"//\")";
		if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.'))
			return "a \".\" or \"..\" component in its name";
		if (l > 255)
			return "a component longer than 255 bytes";
		if (++depth > SK_MODARCH_MAX_DEPTH)
			return "more than 8 levels of folders";
		if (!e)
			break;
		s = e + 1;
	}
	return NULL;
}

/*
 * The folder holding rel's last component beneath root (its folders made as needed, none
 * followed if a link); the last component in *last. -errno (ENOTDIR: a folder of the path is a
 * file of the archive).
 */
static int parent_of(int root, char *rel, char **last)
{
	int cur = dup(root);
	char *s = rel;

	if (cur < 0)
		return -errno;
	for (char *e; (e = strchr(s, '/')); s = e + 1) {
		int nfd;

		*e = '\0';
		if (mkdirat(cur, s, 0755) < 0 && errno != EEXIST) {
			int rc = -errno;

			*e = '/';
			close(cur);
			return rc;
		}
		nfd = openat(cur, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*e = '/';
		close(cur);
		if (nfd < 0)
			return errno == ELOOP ? -ENOTDIR : -errno;
		fchmod(nfd, 0755); /* whatever the umask: folders are 0755 */
		cur = nfd;
	}
	*last = s;
	return cur;
}

static const char *type_words(mode_t t)
{
	switch (t) {
	case AE_IFLNK: return "a symbolic link";
	case AE_IFCHR: return "a character device";
	case AE_IFBLK: return "a block device";
	case AE_IFIFO: return "a FIFO";
	case AE_IFSOCK: return "a socket";
	default: return "an entry of unknown type";
	}
}

/* The data of the current entry into fd, bounded; *total counts every byte read. */
static int copy_data(struct archive *a, int fd, const char *arch, const char *name,
		     uint64_t *total, struct sk_conf_err *err)
{
	for (;;) {
		const void *buf;
		size_t sz;
		la_int64_t off;
		int r = archive_read_data_block(a, &buf, &sz, &off), rc;

		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return fail(err, -EINVAL, arch, name, "cannot read its data: %s",
				    archive_error_string(a));
		if (off < 0 || (uint64_t)off + sz > SK_MODARCH_MAX_FILE)
			return fail(err, -EFBIG, arch, name, "a file larger than %u MiB",
				    SK_MODARCH_MAX_FILE >> 20);
		*total += sz;
		if (*total > SK_MODARCH_MAX_TOTAL)
			return fail(err, -EFBIG, arch, name, "the archive holds more than %u MiB",
				    SK_MODARCH_MAX_TOTAL >> 20);
		if ((rc = sk_pwrite_all(fd, buf, sz, (uint64_t)off)) < 0)
			return fail(err, rc, arch, name, "cannot write it: %s", strerror(-rc));
	}
}

/* Every entry of the archive open in a, written beneath root. */
static int extract(struct archive *a, int root, const char *arch, struct sk_conf_err *err)
{
	static char rel[SK_MODARCH_MAX_NAME + 2];
	struct archive_entry *e;
	uint64_t total = 0;
	unsigned n = 0;
	int r, rc;

	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e), *why;
		mode_t type = archive_entry_filetype(e);
		char *last = NULL;
		int pfd;

		if (++n > SK_MODARCH_MAX_ENTRIES)
			return fail(err, -E2BIG, arch, name, "more than %d entries in the archive",
				    SK_MODARCH_MAX_ENTRIES);
		if (!name)
			return fail(err, -EINVAL, arch, "", "an entry without a name");
		if ((why = entry_rule(name, rel, sizeof(rel))))
			return fail(err, -EINVAL, arch, name, "%s", why);
		if (archive_entry_hardlink(e))
			return fail(err, -EINVAL, arch, name, "a hard link (only files and folders may "
				    "be in a module archive)");
		if (type != AE_IFREG && type != AE_IFDIR)
			return fail(err, -EINVAL, arch, name, "%s (only files and folders may be in a "
				    "module archive)", type_words(type));
		if (!rel[0]) {
			if (type != AE_IFDIR)
				return fail(err, -EINVAL, arch, name, "a file without a name");
			continue; /* "./": the top folder itself */
		}
		if (archive_entry_size_is_set(e) && archive_entry_size(e) > SK_MODARCH_MAX_FILE)
			return fail(err, -EFBIG, arch, name, "a file larger than %u MiB",
				    SK_MODARCH_MAX_FILE >> 20);
		pfd = parent_of(root, rel, &last);
		if (pfd < 0)
			return fail(err, pfd, arch, name, pfd == -ENOTDIR ?
				    "a folder of its name is a file in this archive" :
				    "cannot make its folder: %s", strerror(-pfd));
		if (type == AE_IFDIR) {
			struct stat st;

			rc = 0;
			if (mkdirat(pfd, last, 0755) < 0 &&
			    (errno != EEXIST || fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			     !S_ISDIR(st.st_mode)))
				rc = fail(err, errno == EEXIST ? -EEXIST : -errno, arch, name,
					  "a folder with the name of a file of this archive");
			else if (fchmodat(pfd, last, 0755, 0) < 0) /* not a link: made or seen above */
				rc = fail(err, -errno, arch, name, "cannot set its mode: %s",
					  strerror(errno));
		} else {
			mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
			int fd = openat(pfd, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					mode);

			if (fd < 0) {
				rc = fail(err, -errno, arch, name, errno == EEXIST ?
					  "this name appears twice in the archive" :
					  "cannot create it: %s", strerror(errno));
			} else {
				rc = copy_data(a, fd, arch, name, &total, err);
				if (rc == 0 && fchmod(fd, mode) < 0) /* the umask had its say at create */
					rc = fail(err, -errno, arch, name, "cannot set its mode: %s",
						  strerror(errno));
				if (close(fd) < 0 && rc == 0)
					rc = fail(err, -EIO, arch, name, "cannot write it: %s",
						  strerror(errno));
			}
		}
		close(pfd);
		if (rc < 0)
			return rc;
	}
	if (r != ARCHIVE_EOF)
		return fail(err, -EINVAL, arch, "", "not a module archive (tar or zip): %s",
			    archive_error_string(a));
	if (n == 0)
		return fail(err, -EINVAL, arch, "", "an empty archive");
	return 0;
}

/*
 * The module folder's userconfig.json parsed (read as the agent reads it, sk_cj_read_file),
 * and every script it lists an executable file. mfd is the folder, mdir its path.
 */
static int check_module(int mfd, const char *mdir, const char *arch, const char *where,
			const struct sk_cluster *cluster, struct sk_module *m, struct sk_conf_err *err)
{
	char doc[300], *buf = NULL; /* "ARCHIVE: userconfig.json", the document errors name */
	char path[1400], why[sizeof(err->msg)];
	size_t len = 0;
	int rc;

	snprintf(path, sizeof(path), "%s/userconfig.json", mdir);
	rc = sk_cj_read_file(path, &buf, &len, err);
	if (rc < 0) {
		snprintf(why, sizeof(why), "%s", rc == -ENOENT ? "missing" : err->msg);
		return fail(err, rc, arch, "userconfig.json", "%s", why);
	}
	snprintf(doc, sizeof(doc), "%.200s: userconfig.json", arch);
	rc = sk_conf_module_parse(buf, len, doc, m, err);
	free(buf);
	if (rc < 0)
		return rc;
	if (cluster) {
		snprintf(err->file, sizeof(err->file), "%.200s: userconfig.json", arch);
		rc = sk_conf_module_check(cluster, m, err);
		if (rc < 0) {
			sk_conf_module_free(m);
			return rc;
		}
	}
	for (int s = 0; s < SK_SCRIPT__COUNT; s++) {
		char p[64];
		struct stat st;

		if (!m->scripts[s].enabled)
			continue;
		snprintf(p, sizeof(p), "bin/%s", sk_conf_script_name((enum sk_script)s));
		if (fstatat(mfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    !(st.st_mode & 0111)) {
			sk_conf_module_free(m);
			return fail(err, -EINVAL, doc, "", "scripts.%s: listed, but %s is not in the "
				    "%s as an executable file", sk_conf_script_name((enum sk_script)s), p,
				    where);
		}
	}
	return 0;
}

/* mkdir -p, each component created 0755 if missing. */
static int make_dirs(const char *path)
{
	char p[1024];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, path, n + 1);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;

			*s = '\0';
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return -errno;
			*s = c;
			if (!c)
				return 0;
		}
	}
}

int sk_modarch_install(const char *archive, const char *modules_dir,
		       const struct sk_cluster *cluster, bool replace, char *name,
		       struct sk_conf_err *err)
{
	char tmp[1100], top[256] = "", mdir[1400];
	const char *tmpname;
	struct sk_module *m = calloc(1, sizeof(*m));
	struct archive *a = NULL;
	struct stat st = { 0 };
	int afd = -1, mods = -1, root = -1, mfd = -1, rc, r;

	memset(err, 0, sizeof(*err));
	if (!m)
		return fail(err, -ENOMEM, archive, "", "out of memory");
	afd = open(archive, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (afd < 0) {
		rc = fail(err, -errno, archive, "", "cannot open it: %s", strerror(errno));
		goto out;
	}
	if (fstat(afd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SK_MODARCH_MAX_TOTAL) {
		rc = fail(err, -EINVAL, archive, "", S_ISREG(st.st_mode) ?
			  "larger than 64 MiB" : "not a regular file");
		goto out;
	}
	if ((rc = make_dirs(modules_dir)) < 0 ||
	    (mods = open(modules_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = fail(err, rc < 0 ? rc : -errno, modules_dir, "", "cannot use the modules "
			  "folder: %s", strerror(rc < 0 ? -rc : errno));
		goto out;
	}
	/* the private folder every entry is written beneath */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/" TMP_PREFIX "XXXXXX", modules_dir) >= sizeof(tmp)) {
		rc = fail(err, -ENAMETOOLONG, modules_dir, "", "a path too long for a modules folder");
		goto out;
	}
	if (!mkdtemp(tmp)) {
		rc = fail(err, -errno, modules_dir, "", "cannot make a folder there: %s",
			  strerror(errno));
		goto out;
	}
	tmpname = strrchr(tmp, '/') + 1;
	root = openat(mods, tmpname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0) {
		rc = fail(err, -errno, modules_dir, tmpname, "cannot open it: %s", strerror(errno));
		goto clean;
	}
	a = archive_read_new();
	if (!a) {
		rc = fail(err, -ENOMEM, archive, "", "out of memory");
		goto clean;
	}
	/* formats and filters read by libarchive itself, never by an external program */
	archive_read_support_format_tar(a);
	archive_read_support_format_zip(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_zstd(a);
	if (archive_read_open_fd(a, afd, 16384) != ARCHIVE_OK) {
		rc = fail(err, -EINVAL, archive, "", "not a module archive (tar or zip): %s",
			  archive_error_string(a));
		goto clean;
	}
	if ((rc = extract(a, root, archive, err)) < 0)
		goto clean;
	/* userconfig.json at the top, or in the archive's one top folder */
	if (fstatat(root, "userconfig.json", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		DIR *d = fdopendir(dup(root));
		struct dirent *de;
		int k = 0;

		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && k++ == 0)
				snprintf(top, sizeof(top), "%s", de->d_name);
		if (d)
			closedir(d);
		if (k != 1 || fstatat(root, top, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
			rc = fail(err, -EINVAL, archive, "userconfig.json", "missing (at the top of the "
				  "archive, or in its one top folder)");
			goto clean;
		}
	}
	mfd = top[0] ? openat(root, top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : dup(root);
	if (mfd < 0) {
		rc = fail(err, -errno, archive, top, "cannot open it: %s", strerror(errno));
		goto clean;
	}
	snprintf(mdir, sizeof(mdir), "%s%s%s", tmp, top[0] ? "/" : "", top);
	if ((rc = check_module(mfd, mdir, archive, "archive", cluster, m, err)) < 0)
		goto clean;
	snprintf(name, SK_CONF_NAME_LEN, "%s", m->name);
	sk_conf_module_free(m);
	fchmod(mfd, 0755);
	/* in place in one rename; a module installed under that name is exchanged, then removed */
	r = renameat2(top[0] ? root : mods, top[0] ? top : tmpname, mods, name,
		      replace ? RENAME_EXCHANGE : RENAME_NOREPLACE);
	if (r < 0 && replace && errno == ENOENT)
		r = renameat2(top[0] ? root : mods, top[0] ? top : tmpname, mods, name,
			      RENAME_NOREPLACE);
	if (r < 0) {
		rc = fail(err, -errno, modules_dir, name, errno == EEXIST ?
			  "a module of that name is installed (replace it with --replace)" :
			  "cannot put the module in place: %s", strerror(errno));
		goto clean;
	}
	rc = 0;
clean: /* the private folder, with whatever it still holds (the replaced module too) */
	rm_tree_at(mods, tmpname, 0);
out:
	if (a)
		archive_read_free(a);
	if (mfd >= 0)
		close(mfd);
	if (root >= 0)
		close(root);
	if (mods >= 0)
		close(mods);
	if (afd >= 0)
		close(afd);
	free(m);
	return rc;
}

/* ---- pack ---- */

struct packer {
	struct archive *a;
	const char *dir;
	unsigned n;
	uint64_t total;
	char buf[65536];
};

static int cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* dfd (the folder at rel, "" for the top): its entries in name order, folders first in, each
 * entry checked as install checks it. */
static int pack_dir(struct packer *k, int dfd, const char *rel, int depth, struct sk_conf_err *err)
{
	char *names[SK_MODARCH_MAX_ENTRIES];
	struct dirent *de;
	unsigned nn = 0;
	int rc = 0, fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return fail(err, -errno, k->dir, rel, "cannot list it: %s", strerror(errno));
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (nn == SK_MODARCH_MAX_ENTRIES || !(names[nn] = strdup(de->d_name))) {
			rc = fail(err, -E2BIG, k->dir, rel, "more than %d entries",
				  SK_MODARCH_MAX_ENTRIES);
			break;
		}
		nn++;
	}
	closedir(d);
	qsort(names, nn, sizeof(names[0]), cmp_names);
	for (unsigned i = 0; i < nn && rc == 0; i++) {
		char path[SK_MODARCH_MAX_NAME + 2], chk[SK_MODARCH_MAX_NAME + 2];
		struct archive_entry *e;
		struct stat st;
		const char *why;

		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "",
				     names[i]) >= sizeof(path)) {
			rc = fail(err, -ENAMETOOLONG, k->dir, names[i], "a name longer than 512 bytes");
			break;
		}
		if ((why = entry_rule(path, chk, sizeof(chk)))) {
			rc = fail(err, -EINVAL, k->dir, path, "%s", why);
			break;
		}
		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = fail(err, -errno, k->dir, path, "cannot read it: %s", strerror(errno));
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			rc = fail(err, -EINVAL, k->dir, path, "%s (only files and folders may be in a "
				  "module archive)", type_words(st.st_mode & S_IFMT));
			break;
		}
		if (++k->n > SK_MODARCH_MAX_ENTRIES) {
			rc = fail(err, -E2BIG, k->dir, path, "more than %d entries",
				  SK_MODARCH_MAX_ENTRIES);
			break;
		}
		if (S_ISREG(st.st_mode) && (st.st_size > SK_MODARCH_MAX_FILE ||
					    (k->total += (uint64_t)st.st_size) > SK_MODARCH_MAX_TOTAL)) {
			rc = fail(err, -EFBIG, k->dir, path, "over the size a module archive may hold "
				  "(%u MiB a file, %u MiB in all)", SK_MODARCH_MAX_FILE >> 20,
				  SK_MODARCH_MAX_TOTAL >> 20);
			break;
		}
		e = archive_entry_new();
		if (!e) {
			rc = fail(err, -ENOMEM, k->dir, path, "out of memory");
			break;
		}
		archive_entry_set_pathname(e, path);
		archive_entry_set_filetype(e, S_ISDIR(st.st_mode) ? AE_IFDIR : AE_IFREG);
		archive_entry_set_perm(e, S_ISDIR(st.st_mode) || (st.st_mode & 0111) ? 0755 : 0644);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_uname(e, "root");
		archive_entry_set_gname(e, "root");
		archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		archive_entry_set_size(e, S_ISREG(st.st_mode) ? st.st_size : 0);
		if (archive_write_header(k->a, e) != ARCHIVE_OK) {
			rc = fail(err, -EIO, k->dir, path, "cannot write it into the archive: %s",
				  archive_error_string(k->a));
		} else if (S_ISREG(st.st_mode)) {
			int f = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			off_t left = st.st_size;

			if (f < 0)
				rc = fail(err, -errno, k->dir, path, "cannot read it: %s", strerror(errno));
			while (f >= 0 && left > 0 && rc == 0) {
				ssize_t r = read(f, k->buf, (size_t)left < sizeof(k->buf) ? (size_t)left :
									   sizeof(k->buf));

				if (r <= 0 || archive_write_data(k->a, k->buf, (size_t)r) != r)
					rc = fail(err, -EIO, k->dir, path, "%s while packing it",
						  r <= 0 ? "changed or unreadable" : "cannot write");
				else
					left -= r;
			}
			if (f >= 0)
				close(f);
		} else if (depth >= SK_MODARCH_MAX_DEPTH) {
			rc = fail(err, -EINVAL, k->dir, path, "more than 8 levels of folders");
		} else {
			int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0) {
				rc = fail(err, -errno, k->dir, path, "cannot open it: %s", strerror(errno));
			} else {
				rc = pack_dir(k, sub, path, depth + 1, err);
				close(sub);
			}
		}
		archive_entry_free(e);
	}
	for (unsigned i = 0; i < nn; i++)
		free(names[i]);
	return rc;
}

int sk_modarch_pack(const char *module_dir, const char *out, struct sk_conf_err *err)
{
	struct packer *k = calloc(1, sizeof(*k));
	struct sk_module *m = calloc(1, sizeof(*m));
	int dfd = -1, ofd = -1, rc;

	memset(err, 0, sizeof(*err));
	if (!k || !m) {
		rc = fail(err, -ENOMEM, module_dir, "", "out of memory");
		goto out;
	}
	k->dir = module_dir;
	dfd = open(module_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = fail(err, -errno, module_dir, "", "cannot open the module's folder: %s",
			  strerror(errno));
		goto out;
	}
	if ((rc = check_module(dfd, module_dir, module_dir, "module's folder", NULL, m, err)) < 0)
		goto out;
	sk_conf_module_free(m);
	ofd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (ofd < 0) {
		rc = fail(err, -errno, out, "", errno == EEXIST ? "already exists (the archive is "
			  "written to a new file)" : "cannot create it: %s", strerror(errno));
		goto out;
	}
	k->a = archive_write_new();
	if (!k->a || archive_write_add_filter_gzip(k->a) != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(k->a) != ARCHIVE_OK ||
	    archive_write_open_fd(k->a, ofd) != ARCHIVE_OK) {
		rc = fail(err, -EIO, out, "", "cannot write an archive there: %s",
			  k->a ? archive_error_string(k->a) : "out of memory");
		goto out;
	}
	rc = pack_dir(k, dfd, "", 1, err);
	if (archive_write_close(k->a) != ARCHIVE_OK && rc == 0)
		rc = fail(err, -EIO, out, "", "cannot finish the archive: %s",
			  archive_error_string(k->a));
	if (rc == 0 && fsync(ofd) < 0)
		rc = fail(err, -errno, out, "", "cannot write it: %s", strerror(errno));
out:
	if (k && k->a)
		archive_write_free(k->a);
	if (ofd >= 0) {
		close(ofd);
		if (rc < 0)
			unlink(out); /* ours: made with O_EXCL above */
	}
	if (dfd >= 0)
		close(dfd);
	free(k);
	free(m);
	return rc;
}

int sk_modarch_remove(const char *modules_dir, const char *name, struct sk_conf_err *err)
{
	char aside[64];
	size_t n = strlen(name);
	int mods, rc = 0;

	memset(err, 0, sizeof(*err));
	if (n == 0 || n >= SK_CONF_NAME_LEN || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		return fail(err, -EINVAL, modules_dir, name, "not a module name ([a-z0-9_-], 1..31)");
	mods = open(modules_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mods < 0)
		return fail(err, -errno, modules_dir, name, errno == ENOENT ? "not installed" :
			    "cannot open the modules folder: %s", strerror(errno));
	/* a name the agent ignores, then deleted: a half-deleted module is never loaded */
	snprintf(aside, sizeof(aside), ".remove-%s.%ld", name, (long)getpid());
	if (renameat2(mods, name, mods, aside, RENAME_NOREPLACE) < 0)
		rc = fail(err, -errno, modules_dir, name, errno == ENOENT ? "not installed" :
			  "cannot remove it: %s", strerror(errno));
	else
		rm_tree_at(mods, aside, 0);
	close(mods);
	return rc;
}
