/*
 * sk-mtimecost: what keeping a file's mtime equal on two nodes costs a 4 KiB write+fsync loop on
 * this kernel, and why skfused cannot predict the time the kernel gives a write.
 *
 *   sk-mtimecost DIR [OPS]      (DIR on the filesystem to measure, best a fresh journaled ext4;
 *                                bench/mtimecost.sh makes one)
 *
 * In DIR it runs OPS (default 1000) 4 KiB pwrite + fsync at random offsets of a 1 MiB file, once per
 * way of keeping the mtime, and prints for each the operations per second and, when DIR is on a
 * journaled ext4, the journal commits per operation (/proc/fs/jbd2/DEV-8/info):
 *   native     pwrite, fsync: the kernel's own time
 *   ns-set     a CLOCK_REALTIME time taken before the pwrite, set after it with futimens, as skfused
 *              does by default (SKFUSED_MTIME=write) so that both copies hold the same ns
 *   stat-read  the kernel's time, read back after each pwrite (statx) as the one to send the peer:
 *              the read makes the kernel give the next write a fine-grained time
 *   coarse     a CLOCK_REALTIME_COARSE time, set only when it changed since the last one set: right
 *              only if the kernel gave the pwrite that same coarse time
 *   coarse+chk as coarse, and every 7th write the mtime is read back (statx) and compared with the one
 *              set; the read makes the kernel give the next write a fine-grained time (multigrain
 *              timestamps), so that write takes a CLOCK_REALTIME time set with futimens, as ns-set
 *   busy+chk   coarse+chk while a child process stats and writes a file of its own in a loop: the
 *              fine-grained times the kernel gives it raise the floor of every coarse time it gives
 *              until the next tick, which userspace cannot read
 * "mismatch" counts the read-backs that differed from the time the peer would have been sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_PAGES 256
#define CHECK_EVERY 7
#define OPS_MAX 1000000L

enum way { NATIVE, NS_SET, STAT_READ, COARSE, COARSE_CHK, BUSY_CHK, N_WAYS };
static const char *const way_name[N_WAYS] = { "native", "ns-set",     "stat-read",
					      "coarse", "coarse+chk", "busy+chk" };

static char jbd_info[300];
static char buf[4096];

static double mono_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* DIR's device, if it has a jbd2 journal: its info file into jbd_info */
static void find_journal(const char *dir)
{
	char path[128], line[128], name[64] = "";
	struct stat st;
	FILE *f;

	if (stat(dir, &st) < 0)
		return;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", major(st.st_dev), minor(st.st_dev));
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "DEVNAME=%63s", name) == 1)
			break;
	if (f)
		fclose(f);
	if (!name[0])
		return;
	snprintf(jbd_info, sizeof(jbd_info), "/proc/fs/jbd2/%s-8/info", name);
	if (access(jbd_info, R_OK) < 0)
		jbd_info[0] = '\0';
}

static long commits(void)
{
	char line[256];
	long n = -1;
	FILE *f;

	if (!jbd_info[0] || !(f = fopen(jbd_info, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%ld transactions", &n) == 1)
			break;
	fclose(f);
	return n;
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static int set_mtime(int fd, struct timespec t)
{
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, t };

	return futimens(fd, tv);
}

/* busy+chk's child: stat and write a file of its own until killed (or its parent dies) */
static pid_t start_busy(const char *dir)
{
	char path[4200];
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(path, sizeof(path), "%s/busy", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		_exit(1);
	for (long i = 0; i < 100000000L; i++) { /* bounded: the parent kills it long before */
		struct statx sx;

		if (pwrite(fd, buf, 64, 0) != 64 || statx(fd, "", AT_EMPTY_PATH, STATX_MTIME, &sx) < 0)
			_exit(1);
	}
	_exit(0);
}

static int run(const char *dir, enum way way, long ops)
{
	char path[4200];
	struct timespec last = { 0, 0 };
	long c0, c1, checks = 0, mismatches = 0, sets = 0;
	bool queried = false; /* nothing has read this file's times yet */
	pid_t busy = -1;
	double t0, t1;
	int fd;

	snprintf(path, sizeof(path), "%s/mtimecost-%d", dir, (int)way);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "sk-mtimecost: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < FILE_PAGES; i++)
		if (pwrite(fd, buf, sizeof(buf), (off_t)i * (off_t)sizeof(buf)) != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "sk-mtimecost: %s: write: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
	fsync(fd);
	if (way == BUSY_CHK && (busy = start_busy(dir)) < 0) {
		fprintf(stderr, "sk-mtimecost: fork: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	if (busy > 0)
		usleep(100000);
	srand(1);
	c0 = commits();
	t0 = mono_s();
	for (long i = 0; i < ops; i++) {
		off_t off = (off_t)(rand() % FILE_PAGES) * (off_t)sizeof(buf);
		struct timespec t;
		bool fine = way == NS_SET || ((way == COARSE_CHK || way == BUSY_CHK) && queried);

		if (way != NATIVE && way != STAT_READ)
			clock_gettime(fine ? CLOCK_REALTIME : CLOCK_REALTIME_COARSE, &t);
		if (pwrite(fd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "sk-mtimecost: %s: write: %s\n", path, strerror(errno));
			break;
		}
		if (way == STAT_READ) {
			struct statx sx;

			if (statx(fd, "", AT_EMPTY_PATH, STATX_MTIME, &sx) < 0) {
				fprintf(stderr, "sk-mtimecost: %s: statx: %s\n", path, strerror(errno));
				break;
			}
		} else if (way != NATIVE && (fine || !ts_eq(t, last))) {
			if (set_mtime(fd, t) < 0) {
				fprintf(stderr, "sk-mtimecost: %s: futimens: %s\n", path, strerror(errno));
				break;
			}
			last = t;
			sets++;
		}
		queried = false;
		if ((way == COARSE_CHK || way == BUSY_CHK) && i % CHECK_EVERY == CHECK_EVERY - 1) {
			struct statx sx;

			if (statx(fd, "", AT_EMPTY_PATH, STATX_MTIME, &sx) == 0) {
				checks++;
				mismatches += sx.stx_mtime.tv_sec != last.tv_sec ||
					      sx.stx_mtime.tv_nsec != (uint32_t)last.tv_nsec;
			}
			queried = true;
		}
		if (fsync(fd) < 0) {
			fprintf(stderr, "sk-mtimecost: %s: fsync: %s\n", path, strerror(errno));
			break;
		}
	}
	t1 = mono_s();
	c1 = commits();
	if (busy > 0) {
		kill(busy, SIGKILL);
		waitpid(busy, NULL, 0);
	}
	close(fd);
	unlink(path);
	printf("%-10s %8.0f ops/s", way_name[way], (double)ops / (t1 - t0));
	if (c0 >= 0 && c1 >= 0)
		printf("  commits/op %.2f", (double)(c1 - c0) / (double)ops);
	printf("  futimens/op %.2f", (double)sets / (double)ops);
	if (checks)
		printf("  mismatch %ld of %ld read-backs", mismatches, checks);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	long ops = 1000;
	char *end;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: sk-mtimecost DIR [OPS]\n");
		return 2;
	}
	if (argc == 3) {
		errno = 0;
		ops = strtol(argv[2], &end, 10);
		if (errno || *end || ops < 1 || ops > OPS_MAX) {
			fprintf(stderr, "sk-mtimecost: OPS must be 1..%ld, not \"%s\"\n", OPS_MAX, argv[2]);
			return 2;
		}
	}
	memset(buf, 'x', sizeof(buf));
	find_journal(argv[1]);
	printf("%ld 4 KiB pwrite+fsync per way in %s (%s)\n", ops, argv[1],
	       jbd_info[0] ? jbd_info : "no jbd2 journal found: no commit counts");
	for (int w = 0; w < N_WAYS; w++)
		if (run(argv[1], (enum way)w, ops) < 0)
			return 1;
	return 0;
}
