/* test/unit/test_namescan.c: fused/namescan.c, the bounded search of a tree for a name of an inode, on real directories. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "namescan.h"

static char root[64];
static int root_fd = -1;

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/sk-namescan.XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(root_fd, 0);
}

static void teardown(void)
{
	char cmd[128];

	if (root_fd >= 0)
		close(root_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (root[0])
		(void)!system(cmd);
}

TestSuite(namescan, .init = setup, .fini = teardown, .timeout = 30);

static void mkfile(const char *rel)
{
	int fd = openat(root_fd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	cr_assert_geq(fd, 0, "create %s: %s", rel, strerror(errno));
	close(fd);
}

static struct stat st_of(const char *rel)
{
	struct stat st;

	cr_assert_eq(fstatat(root_fd, rel, &st, AT_SYMLINK_NOFOLLOW), 0, "stat %s", rel);
	return st;
}

/* Many sibling directories: the name sits in whichever the search reads last, and it is
 * found (a fixed 64-entry stack dropped the directories past it). */
Test(namescan, many_sibling_directories)
{
	char rel[64], buf[PATH_MAX];
	struct stat want;
	int n;

	for (int i = 0; i < 300; i++) {
		snprintf(rel, sizeof(rel), "d%03d", i);
		cr_assert_eq(mkdirat(root_fd, rel, 0755), 0);
	}
	/* one file in every directory, so each is a candidate the search must look into */
	for (int i = 0; i < 300; i++) {
		snprintf(rel, sizeof(rel), "d%03d/f", i);
		mkfile(rel);
	}
	for (int i = 0; i < 300; i += 37) {
		snprintf(rel, sizeof(rel), "d%03d/f", i);
		want = st_of(rel);
		n = fused_name_scan(root_fd, &want, buf, sizeof(buf), 1000000);
		cr_assert_eq(n, (int)strlen(rel), "%s: got %d", rel, n);
		cr_assert_str_eq(buf, rel);
	}
}

Test(namescan, deep_chain_and_hard_link)
{
	char rel[4096] = "", buf[PATH_MAX];
	struct stat want;
	int n;

	for (int i = 0; i < 100; i++) {
		strcat(rel, i ? "/x" : "x");
		cr_assert_eq(mkdirat(root_fd, rel, 0755), 0);
	}
	strcat(rel, "/leaf");
	mkfile(rel);
	want = st_of(rel);
	n = fused_name_scan(root_fd, &want, buf, sizeof(buf), 1000000);
	cr_assert_eq(n, (int)strlen(rel));
	cr_assert_str_eq(buf, rel);
	/* the name we knew is gone, another remains: that one is found */
	cr_assert_eq(mkdirat(root_fd, "other", 0755), 0);
	cr_assert_eq(linkat(root_fd, rel, root_fd, "other/alias", 0), 0);
	cr_assert_eq(unlinkat(root_fd, rel, 0), 0);
	n = fused_name_scan(root_fd, &want, buf, sizeof(buf), 1000000);
	cr_assert_str_eq(buf, "other/alias", "got %d %s", n, n > 0 ? buf : "");
}

Test(namescan, not_found_and_bounds)
{
	char buf[PATH_MAX];
	struct stat want;

	cr_assert_eq(mkdirat(root_fd, "a", 0755), 0);
	mkfile("a/f");
	mkfile("g");
	want = st_of("a/f");
	cr_assert_eq(unlinkat(root_fd, "a/f", 0), 0);
	cr_assert_eq(fused_name_scan(root_fd, &want, buf, sizeof(buf), 1000000), -ESTALE,
		     "an inode with no name left");
	want = st_of("g");
	/* a bound of one entry reads "a" (or "g") first: not enough to be sure to find g */
	for (int i = 0; i < 40; i++) {
		char rel[16];

		snprintf(rel, sizeof(rel), "z%02d", i);
		mkfile(rel);
	}
	cr_assert_eq(fused_name_scan(root_fd, &want, buf, sizeof(buf), 1000000), 1);
	cr_assert_str_eq(buf, "g");
	cr_assert_eq(fused_name_scan(root_fd, &want, buf, 2, 1000000), -ENAMETOOLONG,
		     "a name that does not fit the buffer");
	cr_assert_eq(fused_name_scan(root_fd, &want, buf, sizeof(buf), 0), -ESTALE,
		     "no entry may be read");
}
