/* libsk/log.h: one log call for the daemons and tools: priority, module tag, structured fields; sink stderr or journald. */
#ifndef SK_LOG_H
#define SK_LOG_H

#include <stdarg.h>

/* Priorities, most severe first; journald gets the matching syslog priority. */
enum sk_log_level { SK_LOG_ERR = 0, SK_LOG_WARN, SK_LOG_NOTICE, SK_LOG_INFO, SK_LOG_DEBUG };

enum sk_log_sink {
	SK_LOG_STDERR = 0, /* "HH:MM:SS.mmm prog[pid] level: [module] text (state=.. cause=..)" */
	SK_LOG_JOURNAL,    /* sd_journal_sendv with MODULE, NODE, STATE, CAUSE fields */
	SK_LOG_AUTO,       /* journald when stderr is connected to it (JOURNAL_STREAM), else stderr */
};

/*
 * Structured fields of one line; NULL or "" ones are left out. module is a
 * module name ("web") or, for the daemons' own pieces, a tag ("member", "libbpf").
 */
struct sk_log_fields {
	const char *module;
	const char *state;
	const char *cause;
};

/* Program name and the most verbose level written (default "steadykit", INFO). Call first. */
void sk_log_init(const char *prog, enum sk_log_level max);
void sk_log_set_level(enum sk_log_level max);
/* 0; -ENOTSUP when built without libsystemd, -ENOENT when journald's socket is absent
 * (the sink stays what it was). AUTO never fails. */
int sk_log_set_sink(enum sk_log_sink sink);
enum sk_log_sink sk_log_get_sink(void);
/* NODE field of every line from now on (the agent's own node name); NULL clears it. */
void sk_log_set_node(const char *node);
/* Would a line at lvl be written? (skip building expensive arguments) */
int sk_log_enabled(enum sk_log_level lvl);

/*
 * One line (a trailing newline in fmt is dropped). Thread-safe; on stderr one
 * write(2) per line so threads do not interleave. If journald cannot be
 * reached the line goes to stderr instead of being lost.
 */
void sk_logf(enum sk_log_level lvl, const struct sk_log_fields *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sk_vlogf(enum sk_log_level lvl, const struct sk_log_fields *f, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* With a module tag only. */
void sk_logm(enum sk_log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Without fields. */
void sk_log(enum sk_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sk_err(...) sk_log(SK_LOG_ERR, __VA_ARGS__)
#define sk_warn(...) sk_log(SK_LOG_WARN, __VA_ARGS__)
#define sk_notice(...) sk_log(SK_LOG_NOTICE, __VA_ARGS__)
#define sk_info(...) sk_log(SK_LOG_INFO, __VA_ARGS__)
#define sk_debug(...) sk_log(SK_LOG_DEBUG, __VA_ARGS__)

#endif
