/* libsk/conf_json.h: strict json-c reading with JSON paths in errors; internal to libsk/conf*.c. */
#ifndef SK_CONF_JSON_H
#define SK_CONF_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "conf.h"

/*
 * The JSON path being looked at and the error sink. Getters push the key they
 * read and pop it on success, so on error err->path names the offending value.
 */
struct sk_cj {
	struct sk_conf_err *err;
	char path[sizeof(((struct sk_conf_err *)0)->path)];
	size_t plen;
};

/* Allowed characters of a string: [a-z0-9_-], [A-Za-z0-9._-], printable ASCII. */
enum sk_cj_charset { SK_CJ_NAME, SK_CJ_HOST, SK_CJ_PRINT };

/* Printable copy of untrusted text for messages. */
void sk_cj_clean(char *dst, size_t cap, const char *src);
/* Path steps; each returns the old length to hand to sk_cj_pop. */
size_t sk_cj_push_key(struct sk_cj *p, const char *key);
size_t sk_cj_push_idx(struct sk_cj *p, size_t i);
void sk_cj_pop(struct sk_cj *p, size_t old);
/* Record the current path and the message; returns -EINVAL. */
__attribute__((format(printf, 2, 3))) int sk_cj_fail(struct sk_cj *p, const char *fmt, ...);
/* Clear *err and name the document. */
void sk_cj_set_file(struct sk_conf_err *err, const char *name);
/* Refuse keys not listed (NULL-terminated), with a "did you mean" hint. */
int sk_cj_check_keys(struct sk_cj *p, json_object *obj, const char *const *keys);
int sk_cj_want(struct sk_cj *p, json_object *v, json_type t, const char *what);
/* Member lookup; missing is an error only when required (then *v stays NULL). */
int sk_cj_get(struct sk_cj *p, json_object *obj, const char *key, bool required, json_object **v);
int sk_cj_to_int(struct sk_cj *p, json_object *v, int64_t lo, int64_t hi, int64_t *out);
/* Optional integer member in lo..hi (obj may be NULL), def when absent. */
int sk_cj_opt_u32(struct sk_cj *p, json_object *obj, const char *key, int64_t lo, int64_t hi,
		   uint32_t def, uint32_t *out);
/* String of 1..maxlen chars from cs; out has room for maxlen + 1. */
int sk_cj_to_str(struct sk_cj *p, json_object *v, enum sk_cj_charset cs, size_t maxlen, char *out);
int sk_cj_member_str(struct sk_cj *p, json_object *obj, const char *key, bool required,
		      enum sk_cj_charset cs, size_t maxlen, char *out);
/* String member that must be one of words (NULL-terminated); *out = its index. */
int sk_cj_member_enum(struct sk_cj *p, json_object *obj, const char *key, bool required,
		       const char *const *words, int def, int *out);
/* IPv4 or IPv6 literal. */
int sk_cj_to_addr(struct sk_cj *p, json_object *v, struct sk_conf_addr *a);
int sk_cj_member_addr(struct sk_cj *p, json_object *obj, const char *key, bool required,
		       struct sk_conf_addr *a);
/* Array member of lo..hi entries. */
int sk_cj_member_array(struct sk_cj *p, json_object *obj, const char *key, bool required,
			size_t lo, size_t hi, json_object **arr, size_t *n);
/* Object member, its keys checked against keys (if not NULL). */
int sk_cj_member_obj(struct sk_cj *p, json_object *obj, const char *key, bool required,
		      const char *const *keys, json_object **v);
/* Absolute path without "." or ".." components, slashes folded. */
int sk_cj_to_abs_path(struct sk_cj *p, json_object *v, bool allow_root, char *out);
/* Strict JSON text (<= SK_CONF_MAX_FILE) whose top level is an object with no duplicate keys. */
int sk_cj_parse_json(const char *buf, size_t len, struct sk_conf_err *err, json_object **out);
/* Whole regular file of at most SK_CONF_MAX_FILE bytes, malloc()ed. */
/* Open for reading (O_NONBLOCK, plus flags) and insist on a regular file: fd, or -errno with p's error set. */
int sk_cj_open_regular(struct sk_cj *p, const char *path, int flags, struct stat *st);
/* Read up to cap bytes: the count, or -errno with p's error set. */
long sk_cj_read_bounded(struct sk_cj *p, int fd, void *buf, size_t cap);
int sk_cj_read_file(const char *path, char **buf, size_t *len, struct sk_conf_err *err);

#endif
