/* ackwriter: test writer that logs a record only after write()/fsync() returned, and verifies a tree against that log. */
/*
 * Why: "acknowledged means replicated" and "the secondary is a prefix of the
 * primary's history" can only be checked against what the application was
 * told. Each writer thread t appends fixed-size records k = 1, 2, ... in a
 * known order: record k goes to file t<t>-f<(k-1) % files> (created on first
 * use) and then, with --journal, to the thread's journal t<t>-journal. Only
 * when those calls (and the optional fsync) returned is "t k" appended to the
 * ack log, which lives outside the tree under test.
 *
 * Verify mode reads a tree (e.g. the secondary's directory after the primary
 * was killed) and checks, per thread, that the tree equals the state right
 * after some record K (every file holds exactly its records 1..K, byte for
 * byte, nothing else), and that K >= the last acknowledged record. Across threads it checks
 * that no record is present while a record acked before it was written is missing.
 *
 *   ackwriter write  --dir D --log L [--threads T] [--files N] [--size B]
 *                    [--records R] [--duration S] [--fsync] [--journal]
 *                    [--pause-us U] [--slow-ms M]
 *   ackwriter verify --dir D --log L [--threads T] [--files N] [--size B] [--journal] [--prefix-only]
 *
 * write prints one line at the end: records=.. errors=.. max_write_us=..
 * max_fsync_us=.. max_op_us=.. slow=.. (ops over --slow-ms), exits 0 if no
 * call failed, 2 otherwise (e.g. the mount died). SIGTERM/SIGINT stop it cleanly.
 * Slow ops are printed as they happen: "slow t=<thread> k=<rec> op=<write|fsync> us=<n>".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_FILES 4096

struct opts {
	const char *dir, *log;
	int threads, files, size;
	long records;   /* per thread; 0 = unbounded */
	double duration_s;
	int do_fsync, journal;
	int prefix_only; /* verify: async mode promises order, not durability of acked records */
	long pause_us, slow_ms;
};

static struct opts o = { .threads = 1, .files = 16, .size = 512, .duration_s = 0,
			 .slow_ms = 1000 };
static atomic_int stop_flag;
static int log_fd = -1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

struct wstat {
	long records, errors, slow;
	int64_t max_write_us, max_fsync_us, max_op_us;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The exact bytes of record k of thread t: a readable head, a pattern derived from (t, k), a newline. */
static void make_record(char *buf, int t, long k)
{
	int n = snprintf(buf, (size_t)o.size, "t%02d rec %010ld ", t, k);
	uint32_t x = (uint32_t)(t * 2654435761u) ^ (uint32_t)(k * 40503u) ^ 0x9e3779b9u;
	for (int i = n; i < o.size - 1; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (char)('a' + (x >> 16) % 26);
	}
	buf[o.size - 1] = '\n';
}

static void file_name(char *out, size_t cap, int t, int f)
{
	snprintf(out, cap, "%s/t%02d-f%04d", o.dir, t, f);
}

static int write_full(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

static void note_slow(struct wstat *s, int t, long k, const char *op, int64_t us)
{
	if (us <= o.slow_ms * 1000)
		return;
	s->slow++;
	fprintf(stderr, "slow t=%d k=%ld op=%s us=%" PRId64 "\n", t, k, op, us);
}

struct thr {
	pthread_t th;
	int t;
	struct wstat st;
};

static void *writer(void *arg)
{
	struct thr *me = arg;
	struct wstat *s = &me->st;
	int t = me->t;
	int *fds = calloc((size_t)o.files, sizeof(int));
	char *rec = malloc((size_t)o.size);
	char path[4096];
	int jfd = -1;
	int64_t t_end = o.duration_s > 0 ? now_us() + (int64_t)(o.duration_s * 1e6) : 0;

	if (!fds || !rec) {
		s->errors++;
		goto out;
	}
	for (int f = 0; f < o.files; f++)
		fds[f] = -1;
	if (o.journal) {
		snprintf(path, sizeof(path), "%s/t%02d-journal", o.dir, t);
		jfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (jfd < 0) {
			fprintf(stderr, "ackwriter: open %s: %s\n", path, strerror(errno));
			s->errors++;
			goto out;
		}
	}
	for (long k = 1; !atomic_load(&stop_flag); k++) {
		if (o.records && k > o.records)
			break;
		if (t_end && now_us() >= t_end)
			break;
		int f = (int)((k - 1) % o.files);
		int64_t t0 = now_us(), t1;
		if (fds[f] < 0) {
			file_name(path, sizeof(path), t, f);
			fds[f] = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (fds[f] < 0) {
				fprintf(stderr, "ackwriter: t=%d k=%ld open %s: %s\n", t, k, path, strerror(errno));
				s->errors++;
				break;
			}
		}
		make_record(rec, t, k);
		int err = write_full(fds[f], rec, (size_t)o.size);
		if (!err && jfd >= 0)
			err = write_full(jfd, rec, (size_t)o.size);
		t1 = now_us();
		if (t1 - t0 > s->max_write_us)
			s->max_write_us = t1 - t0;
		note_slow(s, t, k, "write", t1 - t0);
		if (err) {
			fprintf(stderr, "ackwriter: t=%d k=%ld write: %s\n", t, k, strerror(-err));
			s->errors++;
			break;
		}
		if (o.do_fsync) {
			int64_t t2 = now_us();
			if (fsync(fds[f]) < 0 || (jfd >= 0 && fsync(jfd) < 0)) {
				fprintf(stderr, "ackwriter: t=%d k=%ld fsync: %s\n", t, k, strerror(errno));
				s->errors++;
				break;
			}
			int64_t t3 = now_us();
			if (t3 - t2 > s->max_fsync_us)
				s->max_fsync_us = t3 - t2;
			note_slow(s, t, k, "fsync", t3 - t2);
		}
		int64_t op = now_us() - t0;
		if (op > s->max_op_us)
			s->max_op_us = op;
		/* Acknowledged: only now does the record count as promised to the application. */
		char line[64];
		int n = snprintf(line, sizeof(line), "%d %ld\n", t, k);
		pthread_mutex_lock(&log_lock);
		int lerr = write_full(log_fd, line, (size_t)n);
		pthread_mutex_unlock(&log_lock);
		if (lerr) {
			fprintf(stderr, "ackwriter: ack log: %s\n", strerror(-lerr));
			s->errors++;
			break;
		}
		s->records = k;
		if (o.pause_us > 0)
			usleep((useconds_t)o.pause_us);
	}
out:
	if (fds)
		for (int f = 0; f < o.files; f++)
			if (fds[f] >= 0)
				close(fds[f]);
	if (jfd >= 0)
		close(jfd);
	free(fds);
	free(rec);
	return NULL;
}

static void on_stop(int sig)
{
	(void)sig;
	atomic_store(&stop_flag, 1);
}

static int do_write(void)
{
	struct thr thr[MAX_THREADS];
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A test that dies must not leave its writer behind: stop with the parent. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);

	log_fd = open(o.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		fprintf(stderr, "ackwriter: open log %s: %s\n", o.log, strerror(errno));
		return 2;
	}
	for (int t = 0; t < o.threads; t++) {
		memset(&thr[t], 0, sizeof(thr[t]));
		thr[t].t = t;
		if (pthread_create(&thr[t].th, NULL, writer, &thr[t]) != 0) {
			fprintf(stderr, "ackwriter: pthread_create failed\n");
			return 2;
		}
	}
	struct wstat tot = { 0 };
	for (int t = 0; t < o.threads; t++) {
		pthread_join(thr[t].th, NULL);
		struct wstat *s = &thr[t].st;
		tot.records += s->records;
		tot.errors += s->errors;
		tot.slow += s->slow;
		if (s->max_write_us > tot.max_write_us)
			tot.max_write_us = s->max_write_us;
		if (s->max_fsync_us > tot.max_fsync_us)
			tot.max_fsync_us = s->max_fsync_us;
		if (s->max_op_us > tot.max_op_us)
			tot.max_op_us = s->max_op_us;
	}
	close(log_fd);
	printf("records=%ld errors=%ld max_write_us=%" PRId64 " max_fsync_us=%" PRId64
	       " max_op_us=%" PRId64 " slow=%ld\n",
	       tot.records, tot.errors, tot.max_write_us, tot.max_fsync_us, tot.max_op_us, tot.slow);
	fflush(stdout);
	return tot.errors ? 2 : 0;
}

/* ---- verify ---- */

static long acked_of(int t)
{
	FILE *fp = fopen(o.log, "r");
	long best = 0;
	int tt;
	long k;
	if (!fp)
		return -1;
	while (fscanf(fp, "%d %ld", &tt, &k) == 2)
		if (tt == t && k > best)
			best = k;
	fclose(fp);
	return best;
}

static char *read_all(const char *path, size_t *n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	*n = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*n = got;
	return buf;
}

/* Check thread t's files against "state after record K"; print what is wrong. Returns number of problems. */
static int verify_thread(int t, long *K_out)
{
	char path[4096];
	char *rec = malloc((size_t)o.size);
	int bad = 0;
	long total = 0;
	size_t *len = calloc((size_t)o.files, sizeof(size_t));
	char **data = calloc((size_t)o.files, sizeof(char *));
	if (!rec || !len || !data) {
		fprintf(stderr, "verify: out of memory\n");
		return 1;
	}
	for (int f = 0; f < o.files; f++) {
		file_name(path, sizeof(path), t, f);
		data[f] = read_all(path, &len[f]);
		if (len[f] % (size_t)o.size) {
			printf("t=%d file f%04d: size %zu is not a whole number of records (torn write)\n", t, f,
			       len[f]);
			bad++;
		}
		total += (long)(len[f] / (size_t)o.size);
	}
	/* Files hold records in round-robin order, so the only candidate K is the total count. */
	long K = total;
	for (int f = 0; f < o.files; f++) {
		long want = K > f ? (K - 1 - f) / o.files + 1 : 0;
		long have = (long)(len[f] / (size_t)o.size);
		if (have != want) {
			printf("t=%d file f%04d: %ld records, state after K=%ld needs %ld (not a prefix)\n", t, f,
			       have, K, want);
			bad++;
		}
		if (want == 0 && data[f] == NULL)
			continue; /* not created yet: right for this K */
		if (want > 0 && data[f] == NULL) {
			printf("t=%d file f%04d: missing\n", t, f);
			bad++;
			continue;
		}
		for (long i = 0; i < have && i < want; i++) {
			long k = f + 1 + i * o.files;
			make_record(rec, t, k);
			if (memcmp(data[f] + i * o.size, rec, (size_t)o.size) != 0) {
				printf("t=%d file f%04d: record %ld (k=%ld) content differs: '%.24s'\n", t, f, i,
				       k, data[f] + i * o.size);
				bad++;
				break;
			}
		}
	}
	if (o.journal) {
		size_t jn;
		snprintf(path, sizeof(path), "%s/t%02d-journal", o.dir, t);
		char *j = read_all(path, &jn);
		long jk = (long)(jn / (size_t)o.size);
		/* The journal write follows the file write of the same record, so it may lag by one. */
		if (jn % (size_t)o.size || !(jk == K || jk == K - 1)) {
			printf("t=%d journal: %zu bytes = %ld records, files say K=%ld\n", t, jn, jk, K);
			bad++;
		}
		for (long i = 0; j && i < jk; i++) {
			make_record(rec, t, i + 1);
			if (memcmp(j + i * o.size, rec, (size_t)o.size) != 0) {
				printf("t=%d journal: record %ld differs\n", t, i + 1);
				bad++;
				break;
			}
		}
		free(j);
	}
	long acked = acked_of(t);
	if (acked < 0) {
		printf("t=%d: cannot read ack log %s\n", t, o.log);
		bad++;
	} else if (K < acked && o.prefix_only) {
		printf("t=%d: %ld acked records not on this side (allowed: --prefix-only)\n", t, acked - K);
	} else if (K < acked) {
		printf("t=%d: LOST acknowledged records: tree has K=%ld, last acked=%ld\n", t, K, acked);
		bad++;
	}
	printf("t=%d K=%ld acked=%ld %s\n", t, K, acked, bad ? "BAD" : "ok");
	*K_out = K;
	for (int f = 0; f < o.files; f++)
		free(data[f]);
	free(data);
	free(len);
	free(rec);
	return bad;
}

/*
 * Across threads: thread t issued record K_t only after its record K_t - 1 was acked, so every
 * record any thread had acked before that ack line is older in the primary's history and must
 * be in the tree as well (the secondary applies a prefix of one ordered stream).
 */
static int verify_causality(const long *K)
{
	FILE *fp = fopen(o.log, "r");
	long maxk[MAX_THREADS] = { 0 };
	int bad = 0, t;
	long k;
	if (!fp)
		return 1;
	while (fscanf(fp, "%d %ld", &t, &k) == 2) {
		if (t < 0 || t >= o.threads)
			continue;
		if (k == K[t] - 1) {
			for (int u = 0; u < o.threads; u++) {
				if (maxk[u] > K[u]) {
					printf("order: t=%d record %ld is in the tree, but t=%d record %ld, acked before it "
					       "was written, is not (K=%ld)\n", t, K[t], u, maxk[u], K[u]);
					bad++;
				}
			}
		}
		if (k > maxk[t])
			maxk[t] = k;
	}
	fclose(fp);
	printf("order across threads: %s\n", bad ? "BAD" : "ok");
	return bad;
}

static int do_verify(void)
{
	long K[MAX_THREADS];
	int bad = 0;
	for (int t = 0; t < o.threads; t++)
		bad += verify_thread(t, &K[t]);
	if (o.threads > 1)
		bad += verify_causality(K);
	printf("verify: %s\n", bad ? "FAILED" : "ok");
	return bad ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: ackwriter write|verify --dir D --log L [--threads T] [--files N] [--size B]\n"
			"       [--records R] [--duration S] [--fsync] [--journal] [--pause-us U] [--slow-ms M]\n");
	exit(64);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", 1, 0, 'd' },      { "log", 1, 0, 'l' },     { "threads", 1, 0, 't' },
		{ "files", 1, 0, 'n' },    { "size", 1, 0, 's' },    { "records", 1, 0, 'r' },
		{ "duration", 1, 0, 'D' }, { "fsync", 0, 0, 'F' },   { "journal", 0, 0, 'J' },
		{ "pause-us", 1, 0, 'p' }, { "slow-ms", 1, 0, 'S' }, { "prefix-only", 0, 0, 'P' },
		{ 0, 0, 0, 0 },
	};
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 'l': o.log = optarg; break;
		case 't': o.threads = atoi(optarg); break;
		case 'n': o.files = atoi(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'r': o.records = atol(optarg); break;
		case 'D': o.duration_s = atof(optarg); break;
		case 'F': o.do_fsync = 1; break;
		case 'J': o.journal = 1; break;
		case 'p': o.pause_us = atol(optarg); break;
		case 'S': o.slow_ms = atol(optarg); break;
		case 'P': o.prefix_only = 1; break;
		default: usage();
		}
	}
	if (!o.dir || !o.log || o.threads < 1 || o.threads > MAX_THREADS || o.files < 1 ||
	    o.files > MAX_FILES || o.size < 32 || o.size > (1 << 20))
		usage();
	if (!strcmp(mode, "write"))
		return do_write();
	if (!strcmp(mode, "verify"))
		return do_verify();
	usage();
	return 64;
}
