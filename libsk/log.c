/* libsk/log.c: log lines to stderr (one write(2) each) or to journald with structured fields. */
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef SK_HAVE_JOURNAL
#include <systemd/sd-journal.h>
#endif

#define LINE_MAX_BYTES 1024
#define NODE_LEN 64

/* Set once at start-up, before threads; read-only afterwards. */
static const char *log_prog = "steadykit";
static enum sk_log_level log_max = SK_LOG_INFO;
static enum sk_log_sink log_sink = SK_LOG_STDERR;
static char log_node[NODE_LEN];

static const char *const level_names[] = { "error", "warn", "notice", "info", "debug" };
/* syslog priorities: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */
static const int level_prio[] = { 3, 4, 5, 6, 7 };

void sk_log_init(const char *prog, enum sk_log_level max)
{
	if (prog)
		log_prog = prog;
	sk_log_set_level(max);
}

void sk_log_set_level(enum sk_log_level max)
{
	log_max = max > SK_LOG_DEBUG ? SK_LOG_DEBUG : max;
}

int sk_log_enabled(enum sk_log_level lvl)
{
	return lvl <= log_max;
}

void sk_log_set_node(const char *node)
{
	snprintf(log_node, sizeof(log_node), "%s", node ? node : "");
}

/* systemd sets JOURNAL_STREAM=dev:ino when stderr is a stream into journald. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int sk_log_set_sink(enum sk_log_sink sink)
{
	/* AUTO: journald when stderr goes there anyway and its socket answers, else stderr. */
	if (sink == SK_LOG_AUTO)
		return stderr_is_journal() && !sk_log_set_sink(SK_LOG_JOURNAL)
			       ? 0
			       : sk_log_set_sink(SK_LOG_STDERR);
	if (sink == SK_LOG_STDERR) {
		log_sink = sink;
		return 0;
	}
	if (sink != SK_LOG_JOURNAL)
		return -EINVAL;
#ifdef SK_HAVE_JOURNAL
	/* sd_journal_sendv drops lines silently when journald is absent: refuse it up front. */
	if (access("/run/systemd/journal/socket", W_OK))
		return -errno;
	log_sink = sink;
	return 0;
#else
	return -ENOTSUP;
#endif
}

enum sk_log_sink sk_log_get_sink(void)
{
	return log_sink;
}

static int has(const char *s)
{
	return s && *s;
}

static void to_stderr(enum sk_log_level lvl, const struct sk_log_fields *f, const char *msg)
{
	char line[LINE_MAX_BYTES + 256];
	struct timespec ts;
	struct tm tm;
	size_t cap = sizeof(line) - 1; /* room for the newline */
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, cap, "%02d:%02d:%02d.%03ld %s%s%s[%d] %s: ", tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, log_prog, log_node[0] ? "@" : "", log_node,
		     (int)getpid(), level_names[lvl]);
	if (f && has(f->module) && (size_t)n < cap)
		n += snprintf(line + n, cap - (size_t)n, "[%s] ", f->module);
	if ((size_t)n < cap)
		n += snprintf(line + n, cap - (size_t)n, "%s", msg);
	if (f && (has(f->state) || has(f->cause)) && (size_t)n < cap)
		n += snprintf(line + n, cap - (size_t)n, " (%s%s%s%s%s)",
			      has(f->state) ? "state=" : "", has(f->state) ? f->state : "",
			      has(f->state) && has(f->cause) ? " " : "",
			      has(f->cause) ? "cause=" : "", has(f->cause) ? f->cause : "");
	if ((size_t)n >= cap)
		n = (int)cap - 1;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

#ifdef SK_HAVE_JOURNAL
static int to_journal(enum sk_log_level lvl, const struct sk_log_fields *f, const char *msg)
{
	char b[7][LINE_MAX_BYTES + 32];
	struct iovec iov[7];
	int n = 0;

#define FIELD(...)                                                                   \
	do {                                                                         \
		int l_ = snprintf(b[n], sizeof(b[n]), __VA_ARGS__);                  \
		iov[n].iov_base = b[n];                                              \
		iov[n].iov_len = l_ < (int)sizeof(b[n]) ? (size_t)l_ : sizeof(b[n]) - 1; \
		n++;                                                                 \
	} while (0)
	FIELD("MESSAGE=%s%s%s%s", f && has(f->module) ? "[" : "", f && has(f->module) ? f->module : "",
	      f && has(f->module) ? "] " : "", msg);
	FIELD("PRIORITY=%d", level_prio[lvl]);
	FIELD("SYSLOG_IDENTIFIER=%s", log_prog);
	if (log_node[0])
		FIELD("NODE=%s", log_node);
	if (f && has(f->module))
		FIELD("MODULE=%s", f->module);
	if (f && has(f->state))
		FIELD("STATE=%s", f->state);
	if (f && has(f->cause))
		FIELD("CAUSE=%s", f->cause);
#undef FIELD
	return sd_journal_sendv(iov, n);
}
#endif

void sk_vlogf(enum sk_log_level lvl, const struct sk_log_fields *f, const char *fmt, va_list ap)
{
	char msg[LINE_MAX_BYTES];
	int n;

	if (lvl > SK_LOG_DEBUG)
		lvl = SK_LOG_DEBUG;
	if (lvl > log_max)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	/* libbpf and libxdp end their lines with a newline; ours must not double it. */
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	/*
	 * A name from the network or a tree can hold an escape sequence or a newline: control
	 * characters show as '?', and each line (libbpf's verifier log has many) is a record
	 * of its own with the full prefix, so no text can pass for a line we did not write.
	 */
	sk_text_clean(msg, (size_t)n, "\t\n");
	for (char *s = msg, *e;; s = e + 1) {
		e = strchr(s, '\n');
		if (e)
			*e = '\0';
#ifdef SK_HAVE_JOURNAL
		if (!(log_sink == SK_LOG_JOURNAL && to_journal(lvl, f, s) >= 0))
#endif
			to_stderr(lvl, f, s);
		if (!e)
			break;
	}
}

void sk_logf(enum sk_log_level lvl, const struct sk_log_fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sk_vlogf(lvl, f, fmt, ap);
	va_end(ap);
}

void sk_logm(enum sk_log_level lvl, const char *module, const char *fmt, ...)
{
	struct sk_log_fields f = {.module = module};
	va_list ap;

	va_start(ap, fmt);
	sk_vlogf(lvl, &f, fmt, ap);
	va_end(ap);
}

void sk_log(enum sk_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sk_vlogf(lvl, NULL, fmt, ap);
	va_end(ap);
}
