/* libsk/conf_json.c: strict JSON for libsk/conf: bounded files, typed getters, paths, unknown/duplicate keys. */
#include "conf_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- parse context: the JSON path being looked at, and the error sink ---- */


/* Keys come from untrusted input: keep them printable and short in messages. */
void sk_cj_clean(char *dst, size_t cap, const char *src)
{
	size_t i;
	for (i = 0; i + 1 < cap && src[i]; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	dst[i] = 0;
}

size_t sk_cj_push_key(struct sk_cj *p, const char *key)
{
	size_t old = p->plen;
	char k[64];
	sk_cj_clean(k, sizeof(k), key);
	int n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, "%s%s", p->plen ? "." : "", k);
	if (n > 0)
		p->plen = strnlen(p->path, sizeof(p->path) - 1);
	return old;
}

size_t sk_cj_push_idx(struct sk_cj *p, size_t i)
{
	size_t old = p->plen;
	int n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, "[%zu]", i);
	if (n > 0)
		p->plen = strnlen(p->path, sizeof(p->path) - 1);
	return old;
}

void sk_cj_pop(struct sk_cj *p, size_t old)
{
	p->plen = old;
	p->path[old] = 0;
}

__attribute__((format(printf, 2, 3))) int sk_cj_fail(struct sk_cj *p, const char *fmt, ...)
{
	va_list ap;
	snprintf(p->err->path, sizeof(p->err->path), "%s", p->path);
	va_start(ap, fmt);
	vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void sk_cj_set_file(struct sk_conf_err *err, const char *name)
{
	memset(err, 0, sizeof(*err));
	snprintf(err->file, sizeof(err->file), "%s", name ? name : "<config>");
}

const char *sk_conf_err_str(const struct sk_conf_err *err, char *buf, size_t len)
{
	if (err->path[0])
		snprintf(buf, len, "%s: %s: %s", err->file, err->path, err->msg);
	else
		snprintf(buf, len, "%s: %s", err->file, err->msg);
	return buf;
}

/* ---- keys ---- */

static unsigned edit_distance(const char *a, const char *b)
{
	unsigned row[65], la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	for (unsigned j = 0; j <= lb; j++)
		row[j] = j;
	for (unsigned i = 1; i <= la; i++) {
		unsigned diag = row[0];
		row[0] = i;
		for (unsigned j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static bool in_list(const char *const *keys, const char *k)
{
	for (; *keys; keys++)
		if (!strcmp(*keys, k))
			return true;
	return false;
}

/* Refuse keys not in `keys`, suggesting the nearest one: a typo must not fall back to a default. */
int sk_cj_check_keys(struct sk_cj *p, json_object *obj, const char *const *keys)
{
	json_object_object_foreach(obj, k, v) {
		(void)v;
		if (in_list(keys, k))
			continue;
		const char *best = NULL;
		unsigned bestd = 3;
		for (const char *const *c = keys; *c; c++) {
			unsigned d = edit_distance(k, *c);
			/* A prefix of a key ("latency_budget") is as good a hint as a typo. */
			size_t lk = strlen(k), lc = strlen(*c);
			if (lk >= 4 && lk < lc && !strncmp(k, *c, lk))
				d = 1;
			if (d < bestd && d < lc) {
				bestd = d;
				best = *c;
			}
		}
		char ck[64];
		sk_cj_clean(ck, sizeof(ck), k);
		sk_cj_push_key(p, k);
		if (best)
			return sk_cj_fail(p, "unknown key '%s' (did you mean '%s'?)", ck, best);
		return sk_cj_fail(p, "unknown key '%s'", ck);
	}
	return 0;
}

/* ---- typed getters; on success the path is left pointing at the parent ---- */

static const char *tname(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

int sk_cj_want(struct sk_cj *p, json_object *v, json_type t, const char *what)
{
	if (json_object_get_type(v) != t)
		return sk_cj_fail(p, "expected %s, got %s", what, v ? tname(v) : "null");
	return 0;
}

/* Look up `key`; missing is an error when required, else returns 0 with *v = NULL. */
int sk_cj_get(struct sk_cj *p, json_object *obj, const char *key, bool required, json_object **v)
{
	*v = NULL;
	if (!json_object_object_get_ex(obj, key, v)) {
		*v = NULL;
		if (required)
			return sk_cj_fail(p, "missing required key '%s'", key);
	}
	return 0;
}

int sk_cj_to_int(struct sk_cj *p, json_object *v, int64_t lo, int64_t hi, int64_t *out)
{
	int r;
	if ((r = sk_cj_want(p, v, json_type_int, "an integer")))
		return r;
	int64_t x = json_object_get_int64(v);
	if (x < lo || x > hi)
		return sk_cj_fail(p, "%lld is out of range %lld..%lld", (long long)x, (long long)lo,
			    (long long)hi);
	*out = x;
	return 0;
}

/* Integer member with a default; the result always fits in uint32. */
int sk_cj_opt_u32(struct sk_cj *p, json_object *obj, const char *key, int64_t lo, int64_t hi,
		   uint32_t def, uint32_t *out)
{
	json_object *v;
	int64_t x;
	int r;
	*out = def;
	if (!obj || (r = sk_cj_get(p, obj, key, false, &v)) || !v)
		return 0;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_to_int(p, v, lo, hi, &x)))
		return r;
	sk_cj_pop(p, o);
	*out = (uint32_t)x;
	return 0;
}


static bool cs_ok(enum sk_cj_charset cs, unsigned char ch)
{
	bool lower = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
	switch (cs) {
	case SK_CJ_NAME:
		return lower;
	case SK_CJ_HOST:
		return lower || (ch >= 'A' && ch <= 'Z') || ch == '.';
	default:
		return ch >= 0x20 && ch < 0x7f;
	}
}

static const char *cs_desc(enum sk_cj_charset cs)
{
	return cs == SK_CJ_NAME ? "[a-z0-9_-]" : cs == SK_CJ_HOST ? "[A-Za-z0-9._-]" : "printable ASCII";
}

/* Copy a string value of 1..maxlen chars from `cs` into out (cap > maxlen). */
int sk_cj_to_str(struct sk_cj *p, json_object *v, enum sk_cj_charset cs, size_t maxlen, char *out)
{
	int r;
	if ((r = sk_cj_want(p, v, json_type_string, "a string")))
		return r;
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (n == 0)
		return sk_cj_fail(p, "must not be empty");
	if (n > maxlen)
		return sk_cj_fail(p, "too long (%zu chars, at most %zu)", n, maxlen);
	for (size_t i = 0; i < n; i++)
		if (!cs_ok(cs, (unsigned char)s[i]))
			return sk_cj_fail(p, "character %zu is not allowed (use %s)", i + 1, cs_desc(cs));
	memcpy(out, s, n);
	out[n] = 0;
	return 0;
}

int sk_cj_member_str(struct sk_cj *p, json_object *obj, const char *key, bool required,
		      enum sk_cj_charset cs, size_t maxlen, char *out)
{
	json_object *v;
	int r;
	if ((r = sk_cj_get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_to_str(p, v, cs, maxlen, out)))
		return r;
	sk_cj_pop(p, o);
	return 0;
}

/* One of a fixed set of words; returns its index in *out. */
int sk_cj_member_enum(struct sk_cj *p, json_object *obj, const char *key, bool required,
		       const char *const *words, int def, int *out)
{
	json_object *v;
	int r;
	*out = def;
	if ((r = sk_cj_get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_want(p, v, json_type_string, "a string")))
		return r;
	const char *s = json_object_get_string(v);
	for (int i = 0; words[i]; i++)
		if (!strcmp(words[i], s) && strlen(s) == (size_t)json_object_get_string_len(v)) {
			*out = i;
			sk_cj_pop(p, o);
			return 0;
		}
	char list[160] = "";
	for (int i = 0; words[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
			 words[i]);
	char cs_[32];
	sk_cj_clean(cs_, sizeof(cs_), s);
	return sk_cj_fail(p, "'%s' is not one of %s", cs_, list);
}

int sk_cj_to_addr(struct sk_cj *p, json_object *v, struct sk_conf_addr *a)
{
	char s[SK_CONF_ADDR_TEXT + 8];
	int r;
	if ((r = sk_cj_to_str(p, v, SK_CJ_PRINT, SK_CONF_ADDR_TEXT, s)))
		return r;
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->ip) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, s, a->ip) == 1)
		a->family = AF_INET6;
	else {
		char c[SK_CONF_ADDR_TEXT + 8];
		sk_cj_clean(c, sizeof(c), s);
		return sk_cj_fail(p, "'%s' is not an IPv4 or IPv6 address", c);
	}
	inet_ntop(a->family, a->ip, a->text, sizeof(a->text));
	return 0;
}

int sk_cj_member_addr(struct sk_cj *p, json_object *obj, const char *key, bool required,
		       struct sk_conf_addr *a)
{
	json_object *v;
	int r;
	if ((r = sk_cj_get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_to_addr(p, v, a)))
		return r;
	sk_cj_pop(p, o);
	return 0;
}

/* Array member of lo..hi elements; *n set (0 when optional and absent). */
int sk_cj_member_array(struct sk_cj *p, json_object *obj, const char *key, bool required,
			size_t lo, size_t hi, json_object **arr, size_t *n)
{
	int r;
	*n = 0;
	if ((r = sk_cj_get(p, obj, key, required, arr)) || !*arr)
		return r;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_want(p, *arr, json_type_array, "an array")))
		return r;
	*n = json_object_array_length(*arr);
	if (*n < lo || *n > hi)
		return sk_cj_fail(p, "has %zu entries, must have %zu..%zu", *n, lo, hi);
	sk_cj_pop(p, o);
	return 0;
}

/* Object member checked against its key list; *v NULL if optional and absent. */
int sk_cj_member_obj(struct sk_cj *p, json_object *obj, const char *key, bool required,
		      const char *const *keys, json_object **v)
{
	int r;
	if ((r = sk_cj_get(p, obj, key, required, v)) || !*v)
		return r;
	size_t o = sk_cj_push_key(p, key);
	if ((r = sk_cj_want(p, *v, json_type_object, "an object")) || (keys && (r = sk_cj_check_keys(p, *v, keys))))
		return r;
	sk_cj_pop(p, o);
	return 0;
}

/* Absolute path, no "." / ".." components; repeated and trailing slashes are folded. */
int sk_cj_to_abs_path(struct sk_cj *p, json_object *v, bool allow_root, char *out)
{
	char raw[SK_CONF_PATH_LEN];
	int r;
	if ((r = sk_cj_to_str(p, v, SK_CJ_PRINT, SK_CONF_PATH_LEN - 1, raw)))
		return r;
	if (raw[0] != '/')
		return sk_cj_fail(p, "must be an absolute path");
	size_t n = 0;
	for (const char *s = raw; *s;) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		const char *e = strchrnul(s, '/');
		size_t l = (size_t)(e - s);
		if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.'))
			return sk_cj_fail(p, "must not contain '.' or '..' components");
		out[n++] = '/';
		memcpy(out + n, s, l);
		n += l;
		s = e;
	}
	if (n == 0) {
		if (!allow_root)
			return sk_cj_fail(p, "must not be '/'");
		out[n++] = '/';
	}
	out[n] = 0;
	return 0;
}

/*
 * json-c keeps the last of two equal keys without a word; a config with two
 * "vip" objects must be refused instead. The document is already known to be
 * valid JSON here, so a small scan of strings and brackets is enough. Keys are
 * compared as written (escapes not decoded).
 */
struct dk {
	const char *s;
	size_t n, off;
};

static int dk_cmp(const void *a, const void *b)
{
	const struct dk *x = a, *y = b;
	int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
	if (c)
		return c;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void sk_cj_line_col(const char *buf, size_t off, unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++, (*col)++)
		if (buf[i] == '\n')
			(*line)++, *col = 0;
}

static int dup_keys(const char *buf, size_t len, struct sk_conf_err *err)
{
	struct {
		bool obj;
		size_t key_start, idx;
		const char *cur;
		size_t curlen;
	} st[40];
	struct sk_cj p = {.err = err};
	struct dk *keys = NULL;
	size_t nk = 0, capk = 0;
	int top = -1, r = 0;
	bool expect_key = false;
	for (size_t i = 0; i < len && !r; i++) {
		char ch = buf[i];
		if (ch == '"') {
			size_t s = ++i;
			while (i < len && buf[i] != '"')
				i += buf[i] == '\\' ? 2 : 1;
			if (i >= len)
				break;
			if (top < 0 || !st[top].obj || !expect_key)
				continue;
			if (nk == capk) {
				struct dk *k = realloc(keys, (capk ? capk * 2 : 64) * sizeof(*k));
				if (!k) {
					r = -ENOMEM;
					break;
				}
				keys = k;
				capk = capk ? capk * 2 : 64;
			}
			keys[nk++] = (struct dk){buf + s, i - s, s};
			st[top].cur = buf + s;
			st[top].curlen = i - s;
			expect_key = false;
		} else if (ch == '{' || ch == '[') {
			if (top + 1 >= (int)(sizeof(st) / sizeof(st[0])))
				break; /* json-c refused deeper documents already */
			top++;
			st[top].obj = ch == '{';
			st[top].key_start = nk;
			st[top].idx = 0;
			st[top].cur = NULL;
			st[top].curlen = 0;
			expect_key = st[top].obj;
		} else if ((ch == '}' || ch == ']') && top >= 0) {
			size_t k0 = st[top].key_start;
			if (st[top].obj && nk - k0 > 1) {
				qsort(keys + k0, nk - k0, sizeof(*keys), dk_cmp);
				for (size_t k = k0 + 1; k < nk; k++) {
					if (dk_cmp(&keys[k - 1], &(struct dk){keys[k].s, keys[k].n, keys[k - 1].off}))
						continue;
					char name[64];
					unsigned line, col;
					snprintf(name, sizeof(name), "%.*s", (int)(keys[k].n < 63 ? keys[k].n : 63), keys[k].s);
					for (int j = 0; j < top; j++) {
						if (st[j].obj) {
							char pk[64];
							snprintf(pk, sizeof(pk), "%.*s", (int)(st[j].curlen < 63 ? st[j].curlen : 63), st[j].cur);
							sk_cj_push_key(&p, pk);
						} else {
							sk_cj_push_idx(&p, st[j].idx);
						}
					}
					sk_cj_push_key(&p, name);
					sk_cj_clean(name, sizeof(name), name);
					sk_cj_line_col(buf, keys[k].off - 1, &line, &col);
					r = sk_cj_fail(&p, "duplicate key '%s' (again at line %u, column %u)", name, line, col);
					break;
				}
			}
			nk = k0;
			top--;
			expect_key = false;
		} else if (ch == ',' && top >= 0) {
			if (st[top].obj)
				expect_key = true;
			else
				st[top].idx++;
		}
	}
	free(keys);
	return r;
}

int sk_cj_parse_json(const char *buf, size_t len, struct sk_conf_err *err, json_object **out)
{
	struct sk_cj p = {.err = err};
	size_t off = 0;
	const char *what = NULL;
	if (len > SK_CONF_MAX_FILE) {
		sk_cj_fail(&p, "file too large (%zu bytes, at most %u)", len, SK_CONF_MAX_FILE);
		return -EFBIG;
	}
	const char *nul = memchr(buf, 0, len);
	json_tokener *tok = json_tokener_new_ex(32);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *root = json_tokener_parse_ex(tok, buf, nul ? (int)(nul - buf) : (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	off = json_tokener_get_parse_end(tok);
	if (je == json_tokener_continue) {
		what = nul ? "NUL byte inside the document" : "unexpected end of input";
		off = nul ? (size_t)(nul - buf) : len;
	} else if (je != json_tokener_success) {
		what = json_tokener_error_desc(je);
	} else {
		while (off < len && strchr(" \t\r\n", buf[off]) && buf[off])
			off++;
		if (off < len)
			what = "unexpected characters after the document";
	}
	json_tokener_free(tok);
	if (what) {
		json_object_put(root);
		unsigned line, col;
		sk_cj_line_col(buf, off < len ? off : len, &line, &col);
		return sk_cj_fail(&p, "invalid JSON at line %u, column %u: %s", line, col, what);
	}
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return sk_cj_fail(&p, "expected a JSON object at the top level");
	}
	int r = dup_keys(buf, len, err);
	if (r) {
		json_object_put(root);
		return r;
	}
	*out = root;
	return 0;
}

/* ---- files ---- */

int sk_cj_open_regular(struct sk_cj *p, const char *path, int flags, struct stat *st)
{
	/* O_NONBLOCK: a FIFO put in place of the file must not hang the agent. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | flags), r;
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP && (flags & O_NOFOLLOW))
			sk_cj_fail(p, "is a symbolic link; point it at the file itself");
		else
			sk_cj_fail(p, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, st) < 0) {
		r = -errno;
		sk_cj_fail(p, "cannot stat: %s", strerror(-r));
		close(fd);
		return r;
	}
	if (!S_ISREG(st->st_mode)) {
		r = sk_cj_fail(p, "not a regular file");
		close(fd);
		return r;
	}
	return fd;
}

long sk_cj_read_bounded(struct sk_cj *p, int fd, void *buf, size_t cap)
{
	size_t n = 0;
	while (n < cap) {
		ssize_t k = read(fd, (char *)buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int r = -errno;
			sk_cj_fail(p, "cannot read: %s", strerror(-r));
			return r;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	return (long)n;
}

int sk_cj_read_file(const char *path, char **buf, size_t *len, struct sk_conf_err *err)
{
	struct sk_cj p = {.err = err};
	struct stat st;
	int r = 0;
	int fd = sk_cj_open_regular(&p, path, 0, &st);
	if (fd < 0)
		return fd;
	if (st.st_size > (off_t)SK_CONF_MAX_FILE) {
		sk_cj_fail(&p, "file too large (%lld bytes, at most %u)", (long long)st.st_size, SK_CONF_MAX_FILE);
		r = -EFBIG;
		goto out;
	}
	/* One byte more than the bound, to notice a file that grew after fstat. */
	char *b = malloc(SK_CONF_MAX_FILE + 1);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	long n = sk_cj_read_bounded(&p, fd, b, SK_CONF_MAX_FILE + 1);
	if (n < 0) {
		free(b);
		r = (int)n;
		goto out;
	}
	if (n > (long)SK_CONF_MAX_FILE) {
		sk_cj_fail(&p, "file too large (more than %u bytes)", SK_CONF_MAX_FILE);
		free(b);
		r = -EFBIG;
		goto out;
	}
	*buf = b;
	*len = (size_t)n;
out:
	close(fd);
	return r;
}

