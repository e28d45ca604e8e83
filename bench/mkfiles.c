/* sk-mkfiles: the small-file create workload of bench/compare.sh (N files of SIZE bytes, then one syncfs). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_count(const char *s, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* One file: what an application that saves a small document does (no fsync; the run ends with syncfs). */
static int make_one(int dfd, const char *name, const char *buf, size_t size)
{
	size_t done = 0;
	int fd, err = 0;

	fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	while (done < size) {
		ssize_t n = write(fd, buf + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (close(fd) < 0 && !err)
		err = -errno;
	return err;
}

int main(int argc, char **argv)
{
	long nfiles, size;
	double t0, t1, t2;
	char name[32];
	char *buf;
	int dfd, err;

	if (argc != 4 || parse_count(argv[2], 10000000, &nfiles) || parse_count(argv[3], 64L << 20, &size) ||
	    nfiles == 0) {
		fprintf(stderr, "usage: sk-mkfiles DIR NFILES SIZE   (DIR exists and is empty; NFILES >= 1)\n");
		return 2;
	}
	dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "sk-mkfiles: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf) {
		fprintf(stderr, "sk-mkfiles: out of memory\n");
		return 1;
	}
	memset(buf, 0x5a, (size_t)size);

	t0 = mono_s();
	for (long i = 0; i < nfiles; i++) {
		snprintf(name, sizeof(name), "f%07ld", i);
		err = make_one(dfd, name, buf, (size_t)size);
		if (err) {
			fprintf(stderr, "sk-mkfiles: %s/%s: %s\n", argv[1], name, strerror(-err));
			return 1;
		}
	}
	t1 = mono_s();
	/* The timed span ends when the files are durable, or a write-back cache would win for free. */
	if (syncfs(dfd) < 0) {
		fprintf(stderr, "sk-mkfiles: syncfs %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	t2 = mono_s();
	printf("files=%ld size=%ld create_s=%.6f syncfs_s=%.6f files_per_s=%.1f create_only_files_per_s=%.1f\n",
	       nfiles, size, t1 - t0, t2 - t1, (double)nfiles / (t2 - t0), (double)nfiles / (t1 - t0));
	free(buf);
	close(dfd);
	return 0;
}
