/* libsk/log.h: one-line logging for the daemons and tools (library code returns errors instead). */
#ifndef SK_LOG_H
#define SK_LOG_H

enum sk_log_level { SK_LOG_ERR = 0, SK_LOG_WARN, SK_LOG_INFO, SK_LOG_DEBUG };

/* Set the program name and the most verbose level printed (default INFO). */
void sk_log_init(const char *prog, enum sk_log_level max);
void sk_log(enum sk_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sk_err(...) sk_log(SK_LOG_ERR, __VA_ARGS__)
#define sk_warn(...) sk_log(SK_LOG_WARN, __VA_ARGS__)
#define sk_info(...) sk_log(SK_LOG_INFO, __VA_ARGS__)
#define sk_debug(...) sk_log(SK_LOG_DEBUG, __VA_ARGS__)

#endif
