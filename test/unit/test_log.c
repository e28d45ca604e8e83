/* test/unit/test_log.c: libsk/log: the stderr line format and filter, and the journald datagram with its fields (a fake journald socket in a private mount namespace). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* Redirect stderr into a file, run the logging, return what was written. */
static char out[8192];

static void capture_begin(int *saved, int *fd)
{
	char path[] = "/tmp/sk_log_XXXXXX";

	*fd = mkstemp(path);
	cr_assert_geq(*fd, 0);
	unlink(path);
	*saved = dup(STDERR_FILENO);
	dup2(*fd, STDERR_FILENO);
}

static const char *capture_end(int saved, int fd)
{
	ssize_t n;

	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	return out;
}

Test(log, stderr_format_and_filter)
{
	struct sk_log_fields f = {.module = "web", .state = "PRIM", .cause = "peer silent"};
	int saved, fd;

	sk_log_init("sktest", SK_LOG_INFO);
	sk_log_set_node("n1");
	cr_assert_eq(sk_log_set_sink(SK_LOG_STDERR), 0);
	capture_begin(&saved, &fd);
	sk_err("plain %d", 7);
	sk_logf(SK_LOG_NOTICE, &f, "took over in %u ms\n", 412u);
	sk_logm(SK_LOG_WARN, "libbpf", "a tagged line");
	sk_debug("hidden below the level");
	sk_logf(SK_LOG_INFO, &(struct sk_log_fields){.cause = "only a cause"}, "x");
	capture_end(saved, fd);
	cr_assert(strstr(out, "sktest@n1["), "%s", out);
	cr_assert(strstr(out, " error: plain 7\n"), "%s", out);
	cr_assert(strstr(out, " notice: [web] took over in 412 ms (state=PRIM cause=peer silent)\n"),
		  "%s", out);
	cr_assert(strstr(out, " warn: [libbpf] a tagged line\n"), "%s", out);
	cr_assert(strstr(out, " info: x (cause=only a cause)\n"), "%s", out);
	cr_assert_null(strstr(out, "hidden"), "%s", out);
	cr_assert_null(strstr(out, "\n\n"), "a trailing newline was doubled: %s", out);
	cr_assert_eq(sk_log_enabled(SK_LOG_DEBUG), 0);
	sk_log_set_level(SK_LOG_DEBUG);
	cr_assert_eq(sk_log_enabled(SK_LOG_DEBUG), 1);
}

Test(log, long_line_is_cut_not_overflowed)
{
	static char big[5000];
	int saved, fd;

	memset(big, 'z', sizeof(big) - 1);
	sk_log_init("sktest", SK_LOG_INFO);
	capture_begin(&saved, &fd);
	sk_info("%s", big);
	capture_end(saved, fd);
	cr_assert_lt(strlen(out), 1400);
	cr_assert_eq(out[strlen(out) - 1], '\n');
}

Test(log, a_hostile_name_cannot_forge_a_line)
{
	const char *l2, *ours, *forged;
	int saved, fd, lines = 0;

	sk_log_init("sktest", SK_LOG_INFO);
	cr_assert_eq(sk_log_set_sink(SK_LOG_STDERR), 0);
	capture_begin(&saved, &fd);
	/* a file name a peer reported, made to forge a log line of its own and colour the terminal */
	sk_warn("refused \"%s\"", "a\n00:00:00.000 skfused[1] info: resync complete\x1b[31m\r\x7f\tb");
	capture_end(saved, fd);
	for (const char *p = out; (p = strchr(p, '\n')); p++)
		lines++;
	cr_assert_eq(lines, 2, "%s", out);
	cr_assert(strstr(out, "] warn: refused \"a\n"), "%s", out);
	/* the second line is a record of ours: our prefix, then the name's text, escapes as '?' */
	l2 = strchr(out, '\n') + 1;
	ours = strstr(l2, "sktest[");
	forged = strstr(l2, "] warn: 00:00:00.000 skfused[1] info: resync complete?[31m??\tb\"\n");
	cr_assert(ours && forged && ours < forged, "%s", out);
}

/* A private mount namespace with an empty /run: the fake journald lives there, the host's is untouched. */
static int fake_journald(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int s;

	cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): %s (needs root)", strerror(errno));
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	cr_assert_eq(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0);
	cr_assert_eq(mkdir("/run/systemd", 0755), 0);
	cr_assert_eq(mkdir("/run/systemd/journal", 0755), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/systemd/journal/socket");
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

Test(log, journal_fields)
{
	struct sk_log_fields f = {.module = "web", .state = "PRIM", .cause = "peer silent"};
	char d[4096];
	ssize_t n;
	int s = fake_journald();

	if (sk_log_set_sink(SK_LOG_JOURNAL) == -ENOTSUP)
		cr_skip_test("built without libsystemd");
	cr_assert_eq(sk_log_get_sink(), SK_LOG_JOURNAL);
	sk_log_init("sktest", SK_LOG_INFO);
	sk_log_set_node("n1");
	sk_logf(SK_LOG_WARN, &f, "node2 silent for %d ms", 412);
	n = recv(s, d, sizeof(d) - 1, MSG_DONTWAIT);
	cr_assert_gt(n, 0, "nothing reached the journal socket");
	d[n] = '\0';
	cr_assert(strstr(d, "MESSAGE=[web] node2 silent for 412 ms\n"), "%s", d);
	cr_assert(strstr(d, "PRIORITY=4\n"), "%s", d);
	cr_assert(strstr(d, "SYSLOG_IDENTIFIER=sktest\n"), "%s", d);
	cr_assert(strstr(d, "NODE=n1\n"), "%s", d);
	cr_assert(strstr(d, "MODULE=web\n"), "%s", d);
	cr_assert(strstr(d, "STATE=PRIM\n"), "%s", d);
	cr_assert(strstr(d, "CAUSE=peer silent\n"), "%s", d);
	/* Fields not given are not sent. */
	sk_log_set_node(NULL);
	sk_err("bare");
	n = recv(s, d, sizeof(d) - 1, MSG_DONTWAIT);
	cr_assert_gt(n, 0);
	d[n] = '\0';
	cr_assert(strstr(d, "MESSAGE=bare\n"), "%s", d);
	cr_assert(strstr(d, "PRIORITY=3\n"), "%s", d);
	cr_assert_null(strstr(d, "MODULE="), "%s", d);
	cr_assert_null(strstr(d, "NODE="), "%s", d);
	cr_assert_null(strstr(d, "STATE="), "%s", d);
	close(s);
}

Test(log, journal_absent_stays_on_stderr)
{
	int saved, fd, s = fake_journald(), rc;

	close(s);
	unlink("/run/systemd/journal/socket");
	rc = sk_log_set_sink(SK_LOG_JOURNAL);
	if (rc == -ENOTSUP)
		cr_skip_test("built without libsystemd");
	cr_assert_eq(rc, -ENOENT, "journald is absent: the sink must say so, not drop lines");
	cr_assert_eq(sk_log_get_sink(), SK_LOG_STDERR);
	sk_log_init("sktest", SK_LOG_INFO);
	capture_begin(&saved, &fd);
	sk_logm(SK_LOG_ERR, "web", "not lost");
	capture_end(saved, fd);
	cr_assert(strstr(out, " error: [web] not lost\n"), "%s", out);
}

Test(log, auto_sink)
{
	struct stat st;
	char js[64];

	unsetenv("JOURNAL_STREAM");
	cr_assert_eq(sk_log_set_sink(SK_LOG_AUTO), 0);
	cr_assert_eq(sk_log_get_sink(), SK_LOG_STDERR);
	cr_assert_eq(sk_log_set_sink((enum sk_log_sink)9), -EINVAL);
	/* stderr "is" journald's stream, but journald's socket is absent: AUTO stays on stderr. */
	cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	close(fake_journald());
	unlink("/run/systemd/journal/socket");
	cr_assert_eq(sk_log_set_sink(SK_LOG_AUTO), 0, "AUTO never fails");
	cr_assert_eq(sk_log_get_sink(), SK_LOG_STDERR);
}

Test(log, auto_sink_picks_journald)
{
	struct stat st;
	char js[64];
	int s = fake_journald();

	if (sk_log_set_sink(SK_LOG_JOURNAL) == -ENOTSUP)
		cr_skip_test("built without libsystemd");
	cr_assert_eq(sk_log_set_sink(SK_LOG_STDERR), 0);
	cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	cr_assert_eq(sk_log_set_sink(SK_LOG_AUTO), 0);
	cr_assert_eq(sk_log_get_sink(), SK_LOG_JOURNAL, "stderr is journald's stream: log natively");
	close(s);
}
