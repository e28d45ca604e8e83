/* libsk/conf.c: json-c parsing of cluster.json and userconfig.json into validated structs (schema in conf.h). */
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- parse context: the JSON path being looked at, and the error sink ---- */

struct pc {
	struct sk_conf_err *err;
	char path[sizeof(((struct sk_conf_err *)0)->path)];
	size_t plen;
};

/* Keys come from untrusted input: keep them printable and short in messages. */
static void clean(char *dst, size_t cap, const char *src)
{
	size_t i;
	for (i = 0; i + 1 < cap && src[i]; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	dst[i] = 0;
}

static size_t push_key(struct pc *p, const char *key)
{
	size_t old = p->plen;
	char k[64];
	clean(k, sizeof(k), key);
	int n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, "%s%s", p->plen ? "." : "", k);
	if (n > 0)
		p->plen = strnlen(p->path, sizeof(p->path) - 1);
	return old;
}

static size_t push_idx(struct pc *p, size_t i)
{
	size_t old = p->plen;
	int n = snprintf(p->path + p->plen, sizeof(p->path) - p->plen, "[%zu]", i);
	if (n > 0)
		p->plen = strnlen(p->path, sizeof(p->path) - 1);
	return old;
}

static void pop(struct pc *p, size_t old)
{
	p->plen = old;
	p->path[old] = 0;
}

__attribute__((format(printf, 2, 3))) static int fail(struct pc *p, const char *fmt, ...)
{
	va_list ap;
	snprintf(p->err->path, sizeof(p->err->path), "%s", p->path);
	va_start(ap, fmt);
	vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void set_file(struct sk_conf_err *err, const char *name)
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
static int check_keys(struct pc *p, json_object *obj, const char *const *keys)
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
		clean(ck, sizeof(ck), k);
		push_key(p, k);
		if (best)
			return fail(p, "unknown key '%s' (did you mean '%s'?)", ck, best);
		return fail(p, "unknown key '%s'", ck);
	}
	return 0;
}

/* ---- typed getters; on success the path is left pointing at the parent ---- */

static const char *tname(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

static int want(struct pc *p, json_object *v, json_type t, const char *what)
{
	if (json_object_get_type(v) != t)
		return fail(p, "expected %s, got %s", what, v ? tname(v) : "null");
	return 0;
}

/* Look up `key`; missing is an error when required, else returns 0 with *v = NULL. */
static int get(struct pc *p, json_object *obj, const char *key, bool required, json_object **v)
{
	*v = NULL;
	if (!json_object_object_get_ex(obj, key, v)) {
		*v = NULL;
		if (required)
			return fail(p, "missing required key '%s'", key);
	}
	return 0;
}

static int to_int(struct pc *p, json_object *v, int64_t lo, int64_t hi, int64_t *out)
{
	int r;
	if ((r = want(p, v, json_type_int, "an integer")))
		return r;
	int64_t x = json_object_get_int64(v);
	if (x < lo || x > hi)
		return fail(p, "%lld is out of range %lld..%lld", (long long)x, (long long)lo,
			    (long long)hi);
	*out = x;
	return 0;
}

/* Integer member with a default; the result always fits in uint32. */
static int opt_u32(struct pc *p, json_object *obj, const char *key, int64_t lo, int64_t hi,
		   uint32_t def, uint32_t *out)
{
	json_object *v;
	int64_t x;
	int r;
	*out = def;
	if (!obj || (r = get(p, obj, key, false, &v)) || !v)
		return 0;
	size_t o = push_key(p, key);
	if ((r = to_int(p, v, lo, hi, &x)))
		return r;
	pop(p, o);
	*out = (uint32_t)x;
	return 0;
}

enum charset { CS_NAME, CS_HOST, CS_PRINT };

static bool cs_ok(enum charset cs, unsigned char ch)
{
	bool lower = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
	switch (cs) {
	case CS_NAME:
		return lower;
	case CS_HOST:
		return lower || (ch >= 'A' && ch <= 'Z') || ch == '.';
	default:
		return ch >= 0x20 && ch < 0x7f;
	}
}

static const char *cs_desc(enum charset cs)
{
	return cs == CS_NAME ? "[a-z0-9_-]" : cs == CS_HOST ? "[A-Za-z0-9._-]" : "printable ASCII";
}

/* Copy a string value of 1..maxlen chars from `cs` into out (cap > maxlen). */
static int to_str(struct pc *p, json_object *v, enum charset cs, size_t maxlen, char *out)
{
	int r;
	if ((r = want(p, v, json_type_string, "a string")))
		return r;
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);
	if (n == 0)
		return fail(p, "must not be empty");
	if (n > maxlen)
		return fail(p, "too long (%zu chars, at most %zu)", n, maxlen);
	for (size_t i = 0; i < n; i++)
		if (!cs_ok(cs, (unsigned char)s[i]))
			return fail(p, "character %zu is not allowed (use %s)", i + 1, cs_desc(cs));
	memcpy(out, s, n);
	out[n] = 0;
	return 0;
}

static int member_str(struct pc *p, json_object *obj, const char *key, bool required,
		      enum charset cs, size_t maxlen, char *out)
{
	json_object *v;
	int r;
	if ((r = get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = push_key(p, key);
	if ((r = to_str(p, v, cs, maxlen, out)))
		return r;
	pop(p, o);
	return 0;
}

/* One of a fixed set of words; returns its index in *out. */
static int member_enum(struct pc *p, json_object *obj, const char *key, bool required,
		       const char *const *words, int def, int *out)
{
	json_object *v;
	int r;
	*out = def;
	if ((r = get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = push_key(p, key);
	if ((r = want(p, v, json_type_string, "a string")))
		return r;
	const char *s = json_object_get_string(v);
	for (int i = 0; words[i]; i++)
		if (!strcmp(words[i], s) && strlen(s) == (size_t)json_object_get_string_len(v)) {
			*out = i;
			pop(p, o);
			return 0;
		}
	char list[160] = "";
	for (int i = 0; words[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s'%s'", i ? ", " : "",
			 words[i]);
	char cs_[32];
	clean(cs_, sizeof(cs_), s);
	return fail(p, "'%s' is not one of %s", cs_, list);
}

static int to_addr(struct pc *p, json_object *v, struct sk_conf_addr *a)
{
	char s[SK_CONF_ADDR_TEXT + 8];
	int r;
	if ((r = to_str(p, v, CS_PRINT, SK_CONF_ADDR_TEXT, s)))
		return r;
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->ip) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, s, a->ip) == 1)
		a->family = AF_INET6;
	else {
		char c[SK_CONF_ADDR_TEXT + 8];
		clean(c, sizeof(c), s);
		return fail(p, "'%s' is not an IPv4 or IPv6 address", c);
	}
	inet_ntop(a->family, a->ip, a->text, sizeof(a->text));
	return 0;
}

static int member_addr(struct pc *p, json_object *obj, const char *key, bool required,
		       struct sk_conf_addr *a)
{
	json_object *v;
	int r;
	if ((r = get(p, obj, key, required, &v)) || !v)
		return r;
	size_t o = push_key(p, key);
	if ((r = to_addr(p, v, a)))
		return r;
	pop(p, o);
	return 0;
}

/* Array member of lo..hi elements; *n set (0 when optional and absent). */
static int member_array(struct pc *p, json_object *obj, const char *key, bool required,
			size_t lo, size_t hi, json_object **arr, size_t *n)
{
	int r;
	*n = 0;
	if ((r = get(p, obj, key, required, arr)) || !*arr)
		return r;
	size_t o = push_key(p, key);
	if ((r = want(p, *arr, json_type_array, "an array")))
		return r;
	*n = json_object_array_length(*arr);
	if (*n < lo || *n > hi)
		return fail(p, "has %zu entries, must have %zu..%zu", *n, lo, hi);
	pop(p, o);
	return 0;
}

/* Object member checked against its key list; *v NULL if optional and absent. */
static int member_obj(struct pc *p, json_object *obj, const char *key, bool required,
		      const char *const *keys, json_object **v)
{
	int r;
	if ((r = get(p, obj, key, required, v)) || !*v)
		return r;
	size_t o = push_key(p, key);
	if ((r = want(p, *v, json_type_object, "an object")) || (keys && (r = check_keys(p, *v, keys))))
		return r;
	pop(p, o);
	return 0;
}

/* Absolute path, no "." / ".." components; repeated and trailing slashes are folded. */
static int to_abs_path(struct pc *p, json_object *v, bool allow_root, char *out)
{
	char raw[SK_CONF_PATH_LEN];
	int r;
	if ((r = to_str(p, v, CS_PRINT, SK_CONF_PATH_LEN - 1, raw)))
		return r;
	if (raw[0] != '/')
		return fail(p, "must be an absolute path");
	size_t n = 0;
	for (const char *s = raw; *s;) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		const char *e = strchrnul(s, '/');
		size_t l = (size_t)(e - s);
		if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.'))
			return fail(p, "must not contain '.' or '..' components");
		out[n++] = '/';
		memcpy(out + n, s, l);
		n += l;
		s = e;
	}
	if (n == 0) {
		if (!allow_root)
			return fail(p, "must not be '/'");
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

static void line_col(const char *buf, size_t off, unsigned *line, unsigned *col)
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
	struct pc p = {.err = err};
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
							push_key(&p, pk);
						} else {
							push_idx(&p, st[j].idx);
						}
					}
					push_key(&p, name);
					clean(name, sizeof(name), name);
					line_col(buf, keys[k].off - 1, &line, &col);
					r = fail(&p, "duplicate key '%s' (again at line %u, column %u)", name, line, col);
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

static int parse_json(const char *buf, size_t len, struct sk_conf_err *err, json_object **out)
{
	struct pc p = {.err = err};
	size_t off = 0;
	const char *what = NULL;
	if (len > SK_CONF_MAX_FILE) {
		fail(&p, "file too large (%zu bytes, at most %u)", len, SK_CONF_MAX_FILE);
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
		line_col(buf, off < len ? off : len, &line, &col);
		return fail(&p, "invalid JSON at line %u, column %u: %s", line, col, what);
	}
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return fail(&p, "expected a JSON object at the top level");
	}
	int r = dup_keys(buf, len, err);
	if (r) {
		json_object_put(root);
		return r;
	}
	*out = root;
	return 0;
}

/* ---- cluster.json ---- */

static const char *const k_cluster[] = {"cluster", "secret_file", "networks", "nodes", "ports",
					"heartbeat", "witness", NULL};
static const char *const k_node[] = {"name", "id", "addresses", NULL};
static const char *const k_ports[] = {"agent", "heartbeat", "replication_base", NULL};
static const char *const k_hb[] = {"interval_ms", "timeout_ms", NULL};
static const char *const k_witness[] = {"address", "port", NULL};

static int parse_node(struct pc *p, json_object *v, struct sk_cluster *c, size_t i)
{
	struct sk_conf_node *n = &c->nodes[i];
	json_object *addrs, *x;
	int64_t id;
	int r;
	if ((r = want(p, v, json_type_object, "an object")) || (r = check_keys(p, v, k_node)) ||
	    (r = member_str(p, v, "name", true, CS_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
		return r;
	for (size_t j = 0; j < i; j++)
		if (!strcmp(c->nodes[j].name, n->name)) {
			size_t o = push_key(p, "name");
			r = fail(p, "duplicate node name '%s' (also nodes[%zu])", n->name, j);
			pop(p, o);
			return r;
		}
	if ((r = get(p, v, "id", true, &x)))
		return r;
	size_t o = push_key(p, "id");
	if ((r = to_int(p, x, 1, 255, &id)))
		return r;
	n->id = (uint8_t)id;
	for (size_t j = 0; j < i; j++)
		if (c->nodes[j].id == n->id)
			return fail(p, "duplicate node id %u (also nodes[%zu])", n->id, j);
	pop(p, o);
	if ((r = member_obj(p, v, "addresses", true, NULL, &addrs)))
		return r;
	o = push_key(p, "addresses");
	json_object_object_foreach(addrs, k, av) {
		(void)av;
		if (sk_conf_network_index(c, k) < 0) {
			char list[128] = "";
			for (unsigned w = 0; w < c->n_networks; w++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 w ? ", " : "", c->networks[w]);
			push_key(p, k);
			char ck[64];
			clean(ck, sizeof(ck), k);
			return fail(p, "unknown network '%s' (networks are: %s)", ck, list);
		}
	}
	for (unsigned w = 0; w < c->n_networks; w++) {
		if ((r = get(p, addrs, c->networks[w], false, &x)))
			return r;
		if (!x)
			return fail(p, "missing the address on network '%s'", c->networks[w]);
		size_t o2 = push_key(p, c->networks[w]);
		if ((r = to_addr(p, x, &n->addr[w])))
			return r;
		for (size_t j = 0; j < i; j++)
			if (!memcmp(c->nodes[j].addr[w].ip, n->addr[w].ip, 16) &&
			    c->nodes[j].addr[w].family == n->addr[w].family)
				return fail(p, "duplicate address %s (also nodes[%zu])", n->addr[w].text, j);
		pop(p, o2);
	}
	pop(p, o);
	return 0;
}

static int parse_cluster(struct pc *p, json_object *root, struct sk_cluster *c)
{
	json_object *arr, *o_ports, *o_hb, *o_w, *x;
	size_t n;
	int r;
	uint32_t u;
	if ((r = check_keys(p, root, k_cluster)) ||
	    (r = member_str(p, root, "cluster", true, CS_NAME, SK_CONF_NAME_LEN - 1, c->name)))
		return r;
	if ((r = get(p, root, "secret_file", true, &x)))
		return r;
	size_t o = push_key(p, "secret_file");
	if ((r = to_abs_path(p, x, false, c->secret_file)))
		return r;
	pop(p, o);

	if ((r = member_array(p, root, "networks", true, 1, SK_CONF_MAX_NETWORKS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		o = push_key(p, "networks");
		push_idx(p, i);
		if ((r = to_str(p, json_object_array_get_idx(arr, i), CS_NAME, SK_CONF_NET_NAME_LEN - 1,
				c->networks[i])))
			return r;
		if (sk_conf_network_index(c, c->networks[i]) >= 0)
			return fail(p, "duplicate network '%s'", c->networks[i]);
		c->n_networks = (unsigned)i + 1;
		pop(p, o);
	}

	if ((r = member_array(p, root, "nodes", true, 1, SK_CONF_MAX_NODES, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		o = push_key(p, "nodes");
		push_idx(p, i);
		if ((r = parse_node(p, json_object_array_get_idx(arr, i), c, i)))
			return r;
		c->n_nodes = (unsigned)i + 1;
		pop(p, o);
	}

	if ((r = member_obj(p, root, "ports", false, k_ports, &o_ports)))
		return r;
	o = push_key(p, "ports");
	if ((r = opt_u32(p, o_ports, "agent", 1, 65535, 7710, &u)))
		return r;
	c->agent_port = (uint16_t)u;
	if ((r = opt_u32(p, o_ports, "heartbeat", 1, 65535, 7711, &u)))
		return r;
	c->hb_port = (uint16_t)u;
	if ((r = opt_u32(p, o_ports, "replication_base", 1024, 65000, 7800, &u)))
		return r;
	c->repl_port_base = (uint16_t)u;
	if (c->agent_port == c->hb_port) {
		push_key(p, "heartbeat");
		return fail(p, "port %u is also the agent port", c->hb_port);
	}
	pop(p, o);

	if ((r = member_obj(p, root, "heartbeat", false, k_hb, &o_hb)))
		return r;
	o = push_key(p, "heartbeat");
	if ((r = opt_u32(p, o_hb, "interval_ms", 20, 10000, 200, &c->hb_interval_ms)) ||
	    (r = opt_u32(p, o_hb, "timeout_ms", 60, 120000, 1000, &c->hb_timeout_ms)))
		return r;
	if (c->hb_timeout_ms < 3 * c->hb_interval_ms) {
		push_key(p, "timeout_ms");
		return fail(p, "%u ms is less than 3 heartbeat intervals (%u ms)", c->hb_timeout_ms,
			    3 * c->hb_interval_ms);
	}
	pop(p, o);

	if ((r = member_obj(p, root, "witness", false, k_witness, &o_w)))
		return r;
	if (o_w) {
		o = push_key(p, "witness");
		if ((r = member_addr(p, o_w, "address", true, &c->witness)) ||
		    (r = opt_u32(p, o_w, "port", 1, 65535, 7712, &u)))
			return r;
		c->witness_port = (uint16_t)u;
		c->has_witness = true;
		pop(p, o);
	}
	return 0;
}

int sk_conf_cluster_parse(const char *buf, size_t len, const char *name, struct sk_cluster *out,
			  struct sk_conf_err *err)
{
	struct pc p = {.err = err};
	json_object *root = NULL;
	int r;
	set_file(err, name);
	if ((r = parse_json(buf, len, err, &root)))
		return r;
	/* Parse into a scratch copy so a refused document leaves *out as it was. */
	struct sk_cluster *c = calloc(1, sizeof(*c));
	if (!c) {
		json_object_put(root);
		return -ENOMEM;
	}
	r = parse_cluster(&p, root, c);
	if (!r)
		memcpy(out, c, sizeof(*c));
	free(c);
	json_object_put(root);
	return r;
}

void sk_conf_cluster_free(struct sk_cluster *c)
{
	/* Everything is inline today; kept so callers need not change if that does. */
	if (c)
		memset(c, 0, sizeof(*c));
}

/* ---- userconfig.json ---- */

static const char *const k_module[] = {"name", "id", "kind", "nodes", "vip", "replication",
				       "checkers", "failover", "scripts", NULL};
static const char *const k_mnode[] = {"name", "weight", NULL};
static const char *const k_vip_mirror[] = {"addr", "prefix", "interface", NULL};
static const char *const k_vip_farm[] = {"addr", "prefix", "interface", "mac", "rule",
					 "ports", "other_ports", NULL};
static const char *const k_repl[] = {"dirs", "mode", "latency_budget_ms", "async_queue_mb", NULL};
static const char *const k_failover[] = {"restart_max", "window_s", NULL};
static const char *const k_script[] = {"timeout_s", NULL};
static const char *const w_kind[] = {"", "mirror", "farm", NULL};
static const char *const w_mode[] = {"sync", "semi-sync", "async", NULL};
static const char *const w_rule[] = {"client", "session", NULL};
static const char *const w_other[] = {"pass", "drop", NULL};
static const char *const w_action[] = {"restart", "failover", "stop", NULL};
static const char *const w_check[] = {"", "process", "tcp", "ping", "interface", "script",
				      "module", NULL};
static const char *const w_script[] = {"prestart", "start_prim", "stop_prim", "start_both",
				       "stop_both", "prestop", "poststop", NULL};
/* Allowed keys per checker type (index = enum sk_check_type). */
static const char *const k_check[][10] = {
	[SK_CHECK_PROCESS] = {"type", "interval_ms", "timeout_ms", "failures", "action", "process"},
	[SK_CHECK_TCP] = {"type", "interval_ms", "timeout_ms", "failures", "action", "host", "port"},
	[SK_CHECK_PING] = {"type", "interval_ms", "timeout_ms", "failures", "action", "host"},
	[SK_CHECK_INTERFACE] = {"type", "interval_ms", "timeout_ms", "failures", "action", "interface"},
	[SK_CHECK_SCRIPT] = {"type", "interval_ms", "timeout_ms", "failures", "action", "path"},
	[SK_CHECK_MODULE] = {"type", "interval_ms", "timeout_ms", "failures", "action", "module"},
};

const char *sk_conf_script_name(enum sk_script s)
{
	return (unsigned)s < SK_SCRIPT__COUNT ? w_script[s] : "?";
}

const char *sk_conf_check_type_name(enum sk_check_type t)
{
	return t >= SK_CHECK_PROCESS && t <= SK_CHECK_MODULE ? w_check[t] : "?";
}

static int parse_mnode(struct pc *p, json_object *v, struct sk_module *m, size_t i)
{
	struct sk_conf_mod_node *n = &m->nodes[i];
	int r;
	uint32_t w;
	if (json_object_is_type(v, json_type_string)) {
		if ((r = to_str(p, v, CS_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
			return r;
		n->weight = m->kind == SK_MOD_FARM ? 100 : 0;
	} else {
		if ((r = want(p, v, json_type_object, "a node name or an object")) ||
		    (r = check_keys(p, v, k_mnode)) ||
		    (r = member_str(p, v, "name", true, CS_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
			return r;
		json_object *x;
		if (m->kind != SK_MOD_FARM && json_object_object_get_ex(v, "weight", &x)) {
			push_key(p, "weight");
			return fail(p, "'weight' is only for farm modules");
		}
		if ((r = opt_u32(p, v, "weight", 1, 1000, m->kind == SK_MOD_FARM ? 100 : 0, &w)))
			return r;
		n->weight = (uint16_t)w;
	}
	for (size_t j = 0; j < i; j++)
		if (!strcmp(m->nodes[j].name, n->name))
			return fail(p, "duplicate node '%s' (also nodes[%zu])", n->name, j);
	return 0;
}

static int parse_mac(struct pc *p, json_object *v, uint8_t mac[6])
{
	char s[18];
	unsigned b[6];
	int r, end = 0;
	if ((r = to_str(p, v, CS_PRINT, 17, s)))
		return r;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6 ||
	    end != 17 || strspn(s, "0123456789abcdefABCDEF:") != 17)
		return fail(p, "'%s' is not a MAC address like 02:00:00:00:00:01", s);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if (mac[0] & 1)
		return fail(p, "%s is a multicast MAC; the virtual MAC must be unicast", s);
	if (!(mac[0] & 2))
		return fail(p, "%s is not locally administered (set bit 0x02 of the first byte, e.g. 02:...)", s);
	return 0;
}

static int parse_vip(struct pc *p, json_object *vo, struct sk_module *m)
{
	struct sk_conf_vip *vip = &m->vip;
	json_object *arr;
	size_t n;
	uint32_t u;
	int r, e;
	if ((r = check_keys(p, vo, m->kind == SK_MOD_FARM ? k_vip_farm : k_vip_mirror)) ||
	    (r = member_addr(p, vo, "addr", true, &vip->addr)))
		return r;
	json_object *x;
	if ((r = get(p, vo, "prefix", true, &x)) ||
	    (r = opt_u32(p, vo, "prefix", 0, vip->addr.family == AF_INET ? 32 : 128, 0, &u)))
		return r;
	vip->prefix = (uint8_t)u;
	if ((r = member_str(p, vo, "interface", true, CS_PRINT, SK_CONF_IFNAME_LEN - 1, vip->ifname)))
		return r;
	if (strpbrk(vip->ifname, "/ :") || !strcmp(vip->ifname, ".") || !strcmp(vip->ifname, "..")) {
		push_key(p, "interface");
		return fail(p, "'%s' is not a valid interface name", vip->ifname);
	}
	m->has_vip = true;
	if (m->kind != SK_MOD_FARM)
		return 0;
	if ((r = get(p, vo, "mac", true, &x)))
		return r;
	size_t o = push_key(p, "mac");
	if ((r = parse_mac(p, x, vip->mac)))
		return r;
	pop(p, o);
	if ((r = member_enum(p, vo, "rule", false, w_rule, SK_LB_CLIENT, &e)))
		return r;
	vip->rule = (enum sk_lb_rule)e;
	if ((r = member_enum(p, vo, "other_ports", false, w_other, 0, &e)))
		return r;
	vip->other_ports_drop = e == 1;
	if ((r = member_array(p, vo, "ports", true, 1, SK_CONF_MAX_VIP_PORTS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		int64_t port;
		o = push_key(p, "ports");
		push_idx(p, i);
		if ((r = to_int(p, json_object_array_get_idx(arr, i), 1, 65535, &port)))
			return r;
		for (size_t j = 0; j < i; j++)
			if (vip->ports[j] == port)
				return fail(p, "duplicate port %u (also ports[%zu])", (unsigned)port, j);
		vip->ports[i] = (uint16_t)port;
		vip->n_ports = (unsigned)i + 1;
		pop(p, o);
	}
	return 0;
}

/* Is a inside b (or equal)? Both normalised absolute paths. */
static bool path_within(const char *a, const char *b)
{
	size_t lb = strlen(b);
	return !strncmp(a, b, lb) && (a[lb] == 0 || a[lb] == '/');
}

static int parse_repl(struct pc *p, json_object *ro, struct sk_module *m)
{
	json_object *arr;
	size_t n;
	int r, e;
	if ((r = member_array(p, ro, "dirs", true, 1, SK_CONF_MAX_DIRS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		size_t o = push_key(p, "dirs");
		push_idx(p, i);
		if ((r = to_abs_path(p, json_object_array_get_idx(arr, i), false, m->dirs[i])))
			return r;
		for (size_t j = 0; j < i; j++)
			if (path_within(m->dirs[i], m->dirs[j]) || path_within(m->dirs[j], m->dirs[i]))
				return fail(p, "'%s' overlaps dirs[%zu] '%s'", m->dirs[i], j, m->dirs[j]);
		m->n_dirs = (unsigned)i + 1;
		pop(p, o);
	}
	if ((r = member_enum(p, ro, "mode", false, w_mode, SK_REPL_SYNC, &e)))
		return r;
	m->repl_mode = (enum sk_repl_mode)e;
	if ((r = opt_u32(p, ro, "latency_budget_ms", 10, 60000, 300, &m->latency_budget_ms)) ||
	    (r = opt_u32(p, ro, "async_queue_mb", 1, 65536, 64, &m->async_queue_mb)))
		return r;
	return 0;
}

static int parse_checker(struct pc *p, json_object *v, struct sk_module *m, struct sk_conf_checker *ck)
{
	json_object *x;
	int r, e;
	if ((r = want(p, v, json_type_object, "an object")) ||
	    (r = member_enum(p, v, "type", true, w_check + 1, 0, &e)))
		return r;
	ck->type = (enum sk_check_type)(e + 1);
	if ((r = check_keys(p, v, k_check[ck->type])) ||
	    (r = opt_u32(p, v, "interval_ms", 100, 3600000, 5000, &ck->interval_ms)) ||
	    (r = opt_u32(p, v, "timeout_ms", 10, ck->interval_ms, ck->interval_ms < 2000 ? ck->interval_ms : 2000,
			 &ck->timeout_ms)) ||
	    (r = opt_u32(p, v, "failures", 1, 100, 3, &ck->failures)) ||
	    (r = member_enum(p, v, "action", false, w_action, SK_ACT_RESTART, &e)))
		return r;
	ck->action = (enum sk_check_action)e;
	switch (ck->type) {
	case SK_CHECK_PROCESS:
		return member_str(p, v, "process", true, CS_PRINT, 255, ck->arg);
	case SK_CHECK_TCP: {
		uint32_t port;
		if ((r = member_addr(p, v, "host", true, &ck->host)) || (r = get(p, v, "port", true, &x)) ||
		    (r = opt_u32(p, v, "port", 1, 65535, 0, &port)))
			return r;
		ck->port = (uint16_t)port;
		return 0;
	}
	case SK_CHECK_PING:
		return member_addr(p, v, "host", true, &ck->host);
	case SK_CHECK_INTERFACE:
		return member_str(p, v, "interface", true, CS_PRINT, SK_CONF_IFNAME_LEN - 1, ck->arg);
	case SK_CHECK_SCRIPT:
		if ((r = member_str(p, v, "path", true, CS_PRINT, SK_CONF_PATH_LEN - 1, ck->arg)))
			return r;
		/* A relative script lives in the module's bin/ and must stay there. */
		if (ck->arg[0] != '/' && (!strcmp(ck->arg, "..") || !strncmp(ck->arg, "../", 3) ||
					  strstr(ck->arg, "/../") || (strlen(ck->arg) >= 3 &&
					  !strcmp(ck->arg + strlen(ck->arg) - 3, "/..")))) {
			push_key(p, "path");
			return fail(p, "a relative script path must not contain '..'");
		}
		return 0;
	case SK_CHECK_MODULE:
		if ((r = member_str(p, v, "module", true, CS_NAME, SK_CONF_NAME_LEN - 1, ck->arg)))
			return r;
		if (!strcmp(ck->arg, m->name)) {
			push_key(p, "module");
			return fail(p, "a module cannot depend on itself");
		}
		return 0;
	}
	return 0;
}

static int parse_module(struct pc *p, json_object *root, struct sk_module *m)
{
	json_object *arr, *x;
	size_t n;
	int r, e;
	if ((r = check_keys(p, root, k_module)) ||
	    (r = member_str(p, root, "name", true, CS_NAME, SK_CONF_NAME_LEN - 1, m->name)))
		return r;
	if ((r = get(p, root, "id", true, &x)) || (r = opt_u32(p, root, "id", 1, 65535, 0, &m->id)))
		return r;
	if ((r = member_enum(p, root, "kind", true, w_kind + 1, 0, &e)))
		return r;
	m->kind = (enum sk_mod_kind)(e + 1);
	bool farm = m->kind == SK_MOD_FARM;

	if ((r = member_array(p, root, "nodes", true, farm ? 2 : 1, SK_CONF_MAX_NODES, &arr, &n)))
		return r;
	if (!farm && n != 2) {
		push_key(p, "nodes");
		return fail(p, "a mirror module has exactly 2 nodes, got %zu", n);
	}
	for (size_t i = 0; i < n; i++) {
		size_t o = push_key(p, "nodes");
		push_idx(p, i);
		if ((r = parse_mnode(p, json_object_array_get_idx(arr, i), m, i)))
			return r;
		m->n_nodes = (unsigned)i + 1;
		pop(p, o);
	}

	if ((r = member_obj(p, root, "vip", farm, NULL, &x)))
		return r;
	if (x) {
		size_t o = push_key(p, "vip");
		if ((r = parse_vip(p, x, m)))
			return r;
		pop(p, o);
	}

	if (farm && json_object_object_get_ex(root, "replication", &x)) {
		push_key(p, "replication");
		return fail(p, "replication is only for mirror modules");
	}
	m->repl_mode = SK_REPL_SYNC;
	m->latency_budget_ms = 300;
	m->async_queue_mb = 64;
	if ((r = member_obj(p, root, "replication", !farm, k_repl, &x)))
		return r;
	if (x) {
		size_t o = push_key(p, "replication");
		if ((r = parse_repl(p, x, m)))
			return r;
		pop(p, o);
	}

	if ((r = member_array(p, root, "checkers", false, 0, SK_CONF_MAX_CHECKERS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		size_t o = push_key(p, "checkers");
		push_idx(p, i);
		if ((r = parse_checker(p, json_object_array_get_idx(arr, i), m, &m->checkers[i])))
			return r;
		m->n_checkers = (unsigned)i + 1;
		pop(p, o);
	}

	if ((r = member_obj(p, root, "failover", false, k_failover, &x)))
		return r;
	size_t o = push_key(p, "failover");
	if ((r = opt_u32(p, x, "restart_max", 0, 100, 3, &m->restart_max)) ||
	    (r = opt_u32(p, x, "window_s", 1, 86400, 600, &m->restart_window_s)))
		return r;
	pop(p, o);

	if ((r = member_obj(p, root, "scripts", false, w_script, &x)))
		return r;
	for (int s = 0; x && s < SK_SCRIPT__COUNT; s++) {
		json_object *so;
		o = push_key(p, "scripts");
		if ((r = member_obj(p, x, w_script[s], false, k_script, &so)))
			return r;
		if (so) {
			size_t o2 = push_key(p, w_script[s]);
			if ((r = opt_u32(p, so, "timeout_s", 1, 3600, 60, &m->scripts[s].timeout_s)))
				return r;
			m->scripts[s].enabled = true;
			pop(p, o2);
		}
		pop(p, o);
	}
	return 0;
}

int sk_conf_module_parse(const char *buf, size_t len, const char *name, struct sk_module *out,
			 struct sk_conf_err *err)
{
	struct pc p = {.err = err};
	json_object *root = NULL;
	int r;
	set_file(err, name);
	if ((r = parse_json(buf, len, err, &root)))
		return r;
	struct sk_module *m = calloc(1, sizeof(*m));
	if (!m) {
		json_object_put(root);
		return -ENOMEM;
	}
	r = parse_module(&p, root, m);
	if (!r)
		memcpy(out, m, sizeof(*m));
	free(m);
	json_object_put(root);
	return r;
}

void sk_conf_module_free(struct sk_module *m)
{
	if (m)
		memset(m, 0, sizeof(*m));
}

/* ---- cross-checks and lookups ---- */

const struct sk_conf_node *sk_conf_node_by_name(const struct sk_cluster *c, const char *name)
{
	for (unsigned i = 0; i < c->n_nodes; i++)
		if (!strcmp(c->nodes[i].name, name))
			return &c->nodes[i];
	return NULL;
}

const struct sk_conf_node *sk_conf_node_by_id(const struct sk_cluster *c, unsigned id)
{
	for (unsigned i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id == id)
			return &c->nodes[i];
	return NULL;
}

int sk_conf_network_index(const struct sk_cluster *c, const char *name)
{
	for (unsigned i = 0; i < c->n_networks; i++)
		if (!strcmp(c->networks[i], name))
			return (int)i;
	return -ENOENT;
}

socklen_t sk_conf_sockaddr(const struct sk_conf_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->ip, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	memcpy(&s4->sin_addr, a->ip, 4);
	return sizeof(*s4);
}

int sk_conf_module_check(const struct sk_cluster *c, const struct sk_module *m,
			 struct sk_conf_err *err)
{
	struct pc p = {.err = err};
	err->path[0] = err->msg[0] = 0;
	for (unsigned i = 0; i < m->n_nodes; i++) {
		if (sk_conf_node_by_name(c, m->nodes[i].name))
			continue;
		char list[128] = "";
		for (unsigned j = 0; j < c->n_nodes && strlen(list) < sizeof(list) - 1; j++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", j ? ", " : "",
				 c->nodes[j].name);
		push_key(&p, "nodes");
		push_idx(&p, i);
		return fail(&p, "node '%s' is not in cluster '%s' (nodes are: %s)", m->nodes[i].name,
			    c->name, list);
	}
	unsigned port = (unsigned)c->repl_port_base + m->id;
	if (m->kind == SK_MOD_MIRROR &&
	    (port > 65535 || port == c->agent_port || port == c->hb_port)) {
		push_key(&p, "id");
		return fail(&p, "replication port %u (replication_base %u + id) is %s", port,
			    c->repl_port_base, port > 65535 ? "over 65535" : "the agent or heartbeat port");
	}
	if (m->has_vip) {
		for (unsigned i = 0; i < c->n_nodes; i++)
			for (unsigned w = 0; w < c->n_networks; w++)
				if (c->nodes[i].addr[w].family == m->vip.addr.family &&
				    !memcmp(c->nodes[i].addr[w].ip, m->vip.addr.ip, 16)) {
					push_key(&p, "vip");
					push_key(&p, "addr");
					return fail(&p, "%s is node '%s''s own address on '%s'",
						    m->vip.addr.text, c->nodes[i].name, c->networks[w]);
				}
	}
	return 0;
}

/* ---- files ---- */

static int read_file(const char *path, char **buf, size_t *len, struct sk_conf_err *err)
{
	struct pc p = {.err = err};
	struct stat st;
	int r = 0;
	/* O_NONBLOCK: a FIFO put in place of the config must not hang the agent. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		fail(&p, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		fail(&p, "cannot stat: %s", strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = fail(&p, "not a regular file");
		goto out;
	}
	if (st.st_size > (off_t)SK_CONF_MAX_FILE) {
		fail(&p, "file too large (%lld bytes, at most %u)", (long long)st.st_size, SK_CONF_MAX_FILE);
		r = -EFBIG;
		goto out;
	}
	/* One byte more than the bound, to notice a file that grew after fstat. */
	char *b = malloc(SK_CONF_MAX_FILE + 1);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	size_t n = 0;
	while (n < SK_CONF_MAX_FILE + 1) {
		ssize_t k = read(fd, b + n, SK_CONF_MAX_FILE + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			fail(&p, "cannot read: %s", strerror(-r));
			free(b);
			goto out;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	if (n > SK_CONF_MAX_FILE) {
		fail(&p, "file too large (more than %u bytes)", SK_CONF_MAX_FILE);
		free(b);
		r = -EFBIG;
		goto out;
	}
	*buf = b;
	*len = n;
out:
	close(fd);
	return r;
}

int sk_conf_cluster_load(const char *path, struct sk_cluster *out, struct sk_conf_err *err)
{
	char *buf;
	size_t len;
	set_file(err, path);
	int r = read_file(path, &buf, &len, err);
	if (r)
		return r;
	r = sk_conf_cluster_parse(buf, len, path, out, err);
	free(buf);
	return r;
}

int sk_conf_module_load(const char *path, struct sk_module *out, struct sk_conf_err *err)
{
	char *buf;
	size_t len;
	set_file(err, path);
	int r = read_file(path, &buf, &len, err);
	if (r)
		return r;
	r = sk_conf_module_parse(buf, len, path, out, err);
	free(buf);
	return r;
}

int sk_conf_load_secret(const char *path, struct sk_key *master, struct sk_conf_err *err)
{
	struct pc p = {.err = err};
	uint8_t buf[SK_CONF_SECRET_MAX + 1];
	struct stat st;
	int r;
	set_file(err, path);
	/* O_NOFOLLOW: the mode and owner checked must be the secret's own, not a link's target's. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP)
			return fail(&p, "is a symbolic link; point secret_file at the file itself"), -ELOOP;
		fail(&p, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		fail(&p, "cannot stat: %s", strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = fail(&p, "not a regular file");
		goto out;
	}
	if ((st.st_mode & 07777) != 0600) {
		r = fail(&p, "mode is %04o, must be 0600 (chmod 600 %s)", st.st_mode & 07777, path);
		r = -EPERM;
		goto out;
	}
	if (st.st_uid != geteuid()) {
		fail(&p, "owned by uid %u, must be owned by uid %u", st.st_uid, geteuid());
		r = -EPERM;
		goto out;
	}
	size_t n = 0;
	while (n < sizeof(buf)) {
		ssize_t k = read(fd, buf + n, sizeof(buf) - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			fail(&p, "cannot read: %s", strerror(-r));
			goto out;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	if (n < SK_PROTO_SECRET_MIN || n > SK_CONF_SECRET_MAX) {
		r = fail(&p, "secret is %zu bytes, must be %u..%u", n, SK_PROTO_SECRET_MIN,
			 SK_CONF_SECRET_MAX);
		goto out;
	}
	r = sk_proto_master_key(master, buf, n);
	if (r)
		fail(&p, "cannot derive the master key: %s", strerror(-r));
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}
