/* test/fuzz/fuzz_modarch.c: libFuzzer target installing each input as a module archive into a scratch folder. */
/*
 * Properties checked (abort() on violation, so libFuzzer reports a crash):
 *  - nothing is ever written beside the modules folder (its parent holds only "modules" and the
 *    archive), whatever the archive holds;
 *  - a refused archive leaves the modules folder empty, with a message, and an entry name
 *    free of control characters;
 *  - an installed module is a folder of regular files (0644 or 0755) and folders (0755) only,
 *    with its userconfig.json, and no private .install-* folder is left; removing it empties
 *    the modules folder.
 * Each run works in a fresh scratch folder under $TMPDIR (or /tmp), removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modarch.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned n = 0;

	CHECK(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Only regular files 0644/0755 and folders 0755 below dir, at most depth levels. */
static void check_tree(int dfd, int depth)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	CHECK(d && depth <= SK_MODARCH_MAX_DEPTH + 1);
	while ((de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		CHECK(fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

			CHECK((st.st_mode & 07777) == 0755 && sub >= 0);
			check_tree(sub, depth + 1);
			close(sub);
		} else {
			CHECK(S_ISREG(st.st_mode));
			CHECK((st.st_mode & 07777) == 0644 || (st.st_mode & 07777) == 0755);
		}
	}
	closedir(d);
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *f)
{
	(void)st;
	(void)f;
	return type == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_rf(const char *path)
{
	CHECK(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char base[256], mods[300], arch[300], name[SK_CONF_NAME_LEN], mod[400];
	struct sk_conf_err err;
	int fd, rc;

	snprintf(base, sizeof(base), "%s/fuzz-modarch.XXXXXX", tmp);
	CHECK(mkdtemp(base));
	snprintf(mods, sizeof(mods), "%s/modules", base);
	snprintf(arch, sizeof(arch), "%s/in.archive", base);
	fd = open(arch, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0 && write(fd, data, size) == (ssize_t)size);
	close(fd);
	rc = sk_modarch_install(arch, mods, NULL, false, name, &err);
	CHECK(count_entries(base) == 2); /* in.archive and modules/, nothing else */
	if (rc < 0) {
		CHECK(err.msg[0] != '\0');
		for (const char *c = err.path; *c; c++)
			CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
		CHECK(count_entries(mods) == 0);
	} else {
		int mfd;

		CHECK(count_entries(mods) == 1); /* the module, no .install-* left */
		snprintf(mod, sizeof(mod), "%s/%s", mods, name);
		mfd = open(mod, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		CHECK(mfd >= 0);
		CHECK(faccessat(mfd, "userconfig.json", R_OK, AT_SYMLINK_NOFOLLOW) == 0);
		check_tree(mfd, 1);
		close(mfd);
		CHECK(sk_modarch_remove(mods, name, &err) == 0);
		CHECK(count_entries(mods) == 0);
	}
	rm_rf(base);
	return 0;
}
