/* agent/history.c: what a module remembers on disk: its agent state, its transitions (bounded) and its log (rotated). */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_MAX_BYTES (4u << 20) /* then module.log -> module.log.1 */
#define HIST_FILE_MAX (256u << 10)

/* ---- module log ---- */

static void log_open(struct agent_mod *m)
{
	if (m->logfd < 0)
		m->logfd = open(m->logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void log_rotate(struct agent_mod *m)
{
	struct stat st;
	char old[AGENT_PATH + 4];

	if (m->logfd < 0 || fstat(m->logfd, &st) < 0 || st.st_size < LOG_MAX_BYTES)
		return;
	snprintf(old, sizeof(old), "%s.1", m->logpath);
	rename(m->logpath, old);
	close(m->logfd);
	m->logfd = -1;
	log_open(m);
}

void agent_mod_log_raw(struct agent_mod *m, const char *src, const char *line, size_t len)
{
	char buf[1400];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (len > 1200)
		len = 1200;
	n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %.*s\n",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, m->a->self->name, src, (int)len, line);
	if (n <= 0)
		return;
	if (n >= (int)sizeof(buf))
		n = (int)sizeof(buf) - 1;
	log_open(m);
	if (m->logfd >= 0 && write(m->logfd, buf, (size_t)n) < 0)
		return;
	log_rotate(m);
}

void agent_mod_log(struct agent_mod *m, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(line))
		n = (int)sizeof(line) - 1;
	agent_mod_log_raw(m, "agent", line, (size_t)n);
	/* the daemon's own log carries the structured fields (MODULE, NODE, STATE; CAUSE of a
	 * running plan) for journald */
	{
		struct sk_log_fields f = { .module = m->conf.name, .state = sk_state_name(m->state),
					   .cause = m->plan.active ? m->plan.cause : NULL };

		sk_logf(SK_LOG_INFO, &f, "%s", line);
	}
}

/* ---- persisted agent state ---- */

static const char *role_name(enum agent_role r)
{
	return r == AGENT_ROLE_PRIMARY ? "primary" : r == AGENT_ROLE_SECONDARY ? "secondary" : "none";
}

int agent_state_load(struct agent_mod *m)
{
	char path[AGENT_PATH + 16], line[128];
	FILE *fp;

	m->fresh = true;
	m->want_started = true;
	m->last_role = AGENT_ROLE_NONE;
	m->gen = 0;
	snprintf(path, sizeof(path), "%s/agent.state", m->statedir);
	fp = fopen(path, "re");
	if (!fp)
		return errno == ENOENT ? 0 : -errno;
	m->fresh = false;
	for (int i = 0; i < 64 && fgets(line, sizeof(line), fp); i++) {
		unsigned long long v;
		char word[16];

		if (sscanf(line, "gen=%llu", &v) == 1)
			m->gen = v;
		else if (sscanf(line, "peer_out=%llu", &v) == 1)
			m->peer_out = v != 0;
		else if (sscanf(line, "in_sync=%llu", &v) == 1)
			m->in_sync = v != 0;
		else if (sscanf(line, "started=%llu", &v) == 1)
			m->want_started = v != 0;
		else if (sscanf(line, "role=%15s", word) == 1)
			m->last_role = !strcmp(word, "primary") ? AGENT_ROLE_PRIMARY :
				       !strcmp(word, "secondary") ? AGENT_ROLE_SECONDARY :
								    AGENT_ROLE_NONE;
	}
	fclose(fp);
	return 0;
}

/* tmp + fsync + rename + fsync(dir): after a crash the file is the old or the new one. */
int agent_state_save(struct agent_mod *m)
{
	char path[AGENT_PATH + 16], tmp[AGENT_PATH + 16], buf[256];
	int fd, dfd, n, rc = 0;

	snprintf(path, sizeof(path), "%s/agent.state", m->statedir);
	snprintf(tmp, sizeof(tmp), "%s/agent.state.tmp", m->statedir);
	n = snprintf(buf, sizeof(buf), "role=%s\ngen=%llu\npeer_out=%d\nin_sync=%d\nstarted=%d\n",
		     role_name(m->last_role), (unsigned long long)m->gen, m->peer_out, m->in_sync,
		     m->want_started);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	dfd = open(m->statedir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (rc < 0)
		sk_err("module %s: cannot save %s: %s", m->conf.name, path, strerror(-rc));
	else
		m->fresh = false;
	return rc;
}

/* ---- transitions ---- */

static void hist_push(struct agent_mod *m, const struct sk_ctl_trans *t)
{
	m->hist[(m->hist_head + m->hist_n) % AGENT_HIST] = *t;
	if (m->hist_n < AGENT_HIST)
		m->hist_n++;
	else
		m->hist_head = (m->hist_head + 1) % AGENT_HIST;
}

static void hist_path(struct agent_mod *m, char *out, size_t cap)
{
	snprintf(out, cap, "%s/transitions.jsonl", m->statedir);
}

/* Rewrite the file with what is in memory (the last AGENT_HIST), so it stays bounded. */
static void hist_compact(struct agent_mod *m)
{
	char path[AGENT_PATH + 32], tmp[AGENT_PATH + 40];
	FILE *fp;

	hist_path(m, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "we");
	if (!fp)
		return;
	for (unsigned i = 0; i < m->hist_n; i++) {
		json_object *o;

		if (sk_ctl_trans_to_json(&m->hist[(m->hist_head + i) % AGENT_HIST], &o) == 0) {
			fprintf(fp, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
			json_object_put(o);
		}
	}
	if (fflush(fp) == 0 && fsync(fileno(fp)) == 0)
		rename(tmp, path);
	fclose(fp);
}

int agent_hist_load(struct agent_mod *m)
{
	char path[AGENT_PATH + 32], line[2048], err[128];
	struct stat st = { 0 };
	FILE *fp;
	int bad = 0;

	hist_path(m, path, sizeof(path));
	fp = fopen(path, "re");
	if (!fp)
		return 0;
	/* bounded: a file past HIST_FILE_MAX is read from its tail */
	if (fstat(fileno(fp), &st) == 0 && st.st_size > HIST_FILE_MAX)
		fseek(fp, st.st_size - HIST_FILE_MAX, SEEK_SET);
	while (fgets(line, sizeof(line), fp)) {
		struct sk_ctl_trans t;
		json_object *o = json_tokener_parse(line);

		if (o && sk_ctl_trans_from_json(o, &t, err, sizeof(err)) == 0)
			hist_push(m, &t);
		else
			bad++;
		json_object_put(o);
	}
	fclose(fp);
	if (bad > 1)
		sk_warn("module %s: %d unreadable lines in %s skipped", m->conf.name, bad, path);
	if (st.st_size > HIST_FILE_MAX / 2)
		hist_compact(m);
	return 0;
}

void agent_hist_add(struct agent_mod *m, const struct sk_ctl_trans *t)
{
	char path[AGENT_PATH + 32];
	json_object *o;
	FILE *fp;
	struct stat st;

	hist_push(m, t);
	hist_path(m, path, sizeof(path));
	if (sk_ctl_trans_to_json(t, &o) < 0)
		return;
	fp = fopen(path, "ae");
	if (fp) {
		fprintf(fp, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(fp);
		fsync(fileno(fp));
		if (fstat(fileno(fp), &st) == 0 && st.st_size > HIST_FILE_MAX / 2) {
			fclose(fp);
			fp = NULL;
			hist_compact(m);
		}
		if (fp)
			fclose(fp);
	}
	json_object_put(o);
}
