/* libsk/replmsg.c: encode and bounded, validating decode of replication payloads and control requests. */
#include "replmsg.h"
#include "gen.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#define FALLOC_FL_PUNCH_HOLE 0x02
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#define FALLOC_FL_ZERO_RANGE 0x10
#define FALLOC_FL_INSERT_RANGE 0x20
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif

bool sk_rmsg_name_ok(const char *p, size_t len)
{
	if (len == 0 || len > SK_RMSG_NAME_MAX)
		return false;
	if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	return memchr(p, '/', len) == NULL && memchr(p, '\0', len) == NULL;
}

bool sk_rmsg_path_ok(const char *p, size_t len, bool root_ok)
{
	size_t i = 0;

	if (len == 0)
		return root_ok;
	if (len > SK_RMSG_PATH_MAX)
		return false;
	while (i < len) {
		const char *s = memchr(p + i, '/', len - i);
		size_t clen = s ? (size_t)(s - (p + i)) : len - i;

		if (!sk_rmsg_name_ok(p + i, clen))
			return false;
		i += clen;
		if (s) {
			i++; /* the slash; a trailing one leaves an empty last component */
			if (i == len)
				return false;
		}
	}
	return true;
}

/* What each type carries; checked on decode so appliers never see a malformed op. */
enum { P_NO = 0, P_YES, P_ROOT_OK, P_OR_FH };
struct rule {
	uint8_t p1, p2;
	bool name;
	bool need_fh;
	uint32_t data_max;
	uint32_t flags_ok;
	uint32_t valid_ok;
};

#define T_OWN (SK_RV_MODE | SK_RV_UID | SK_RV_GID)
#define T_TIMES (SK_RV_ATIME | SK_RV_MTIME)
#define T_P (SK_RV_P1MTIME | SK_RV_P2MTIME)

static const struct rule rules[SK_RMSG__MAX] = {
	[SK_RMSG_START] = { P_NO, P_NO, false, false, SK_GEN_WIRE_LEN,
			    SK_START_MODE_MASK | SK_START_F_SURVIVOR | SK_START_F_OWNLIST, 0 },
	[SK_RMSG_FAILED] = { P_OR_FH, P_ROOT_OK, false, false, 0, 0, 0 },
	[SK_RMSG_OPEN] = { P_YES, P_NO, false, true, 0, SK_RO_TRUNC | SK_RO_ORPHAN, T_TIMES },
	[SK_RMSG_CREATE] = { P_YES, P_NO, false, true, 0, SK_RO_EXCL | SK_RO_TRUNC | SK_RO_ASCALLER,
			     T_OWN | T_TIMES | SK_RV_P1MTIME },
	[SK_RMSG_RELEASE] = { P_NO, P_NO, false, true, 0, 0, T_TIMES },
	[SK_RMSG_WRITE] = { P_NO, P_NO, false, true, SK_RMSG_DATA_MAX, 0, T_TIMES },
	[SK_RMSG_SETATTR] = { P_OR_FH, P_NO, false, false, 0, 0, T_OWN | SK_RV_SIZE | T_TIMES },
	[SK_RMSG_FALLOCATE] = { P_NO, P_NO, false, true, 0,
				FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
					FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE,
				T_TIMES },
	[SK_RMSG_COPY] = { P_NO, P_NO, false, true, 0, 0, T_TIMES },
	[SK_RMSG_MKDIR] = { P_YES, P_NO, false, false, 0, 0, T_OWN | T_TIMES | SK_RV_P1MTIME },
	[SK_RMSG_MKNOD] = { P_YES, P_NO, false, false, 0, 0, T_OWN | T_TIMES | SK_RV_P1MTIME },
	[SK_RMSG_SYMLINK] = { P_YES, P_NO, false, false, SK_RMSG_PATH_MAX, 0,
			      SK_RV_UID | SK_RV_GID | T_TIMES | SK_RV_P1MTIME },
	[SK_RMSG_LINK] = { P_YES, P_YES, false, false, 0, 0, SK_RV_P2MTIME },
	[SK_RMSG_UNLINK] = { P_YES, P_NO, false, false, 0, 0, SK_RV_P1MTIME },
	[SK_RMSG_RMDIR] = { P_YES, P_NO, false, false, 0, 0, SK_RV_P1MTIME },
	[SK_RMSG_RENAME] = { P_YES, P_YES, false, false, 0, RENAME_NOREPLACE | RENAME_EXCHANGE, T_P },
	[SK_RMSG_SETXATTR] = { P_OR_FH, P_NO, true, false, SK_RMSG_XATTR_VAL_MAX,
			       XATTR_CREATE | XATTR_REPLACE, 0 },
	[SK_RMSG_REMOVEXATTR] = { P_OR_FH, P_NO, true, false, 0, 0, 0 },
	[SK_RMSG_FSYNC] = { P_OR_FH, P_NO, false, false, 0, SK_RO_DATASYNC, T_TIMES },
	[SK_RMSG_RS_DIR] = { P_ROOT_OK, P_NO, false, false, SK_RMSG_DATA_MAX,
			     SK_RO_FIRST | SK_RO_LAST | SK_RO_DMETA | SK_RO_SHALLOW, 0 },
	[SK_RMSG_RS_SUMSREQ] = { P_YES, P_NO, false, false, 0, 0, 0 },
	[SK_RMSG_RS_DATA] = { P_YES, P_NO, false, false, SK_RMSG_DATA_MAX, 0, 0 },
	[SK_RMSG_RS_META] = { P_ROOT_OK, P_NO, false, false, SK_RMSG_DATA_MAX, SK_RO_XATTRS,
			      T_OWN | SK_RV_SIZE | T_TIMES },
	[SK_RMSG_RS_END] = { P_NO, P_NO, false, true, 0, 0, 0 },
	[SK_RMSG_RS_MOVE] = { P_YES, P_YES, false, false, 0, 0, 0 },
};

static bool type_known(uint8_t t)
{
	return t == SK_RMSG_START || t == SK_RMSG_FAILED ||
	       (t >= SK_RMSG_OPEN && t <= SK_RMSG_FSYNC) ||
	       (t >= SK_RMSG_RS_DIR && t <= SK_RMSG_RS_END) || t == SK_RMSG_RS_MOVE;
}

static void put_ts(uint8_t *p, const struct sk_rmsg_ts *t)
{
	sk_put_u64(p, (uint64_t)t->sec);
	sk_put_u32(p + 8, t->nsec);
}

static void get_ts(const uint8_t *p, struct sk_rmsg_ts *t)
{
	t->sec = (int64_t)sk_get_u64(p);
	t->nsec = sk_get_u32(p + 8);
}

static bool ts_ok(const struct sk_rmsg_ts *t)
{
	return t->nsec < 1000000000u;
}

/* Checks everything except the encoding itself; shared by encode and decode. */
static const char *op_check(const struct sk_rmsg_op *op)
{
	const struct rule *r;
	uint32_t ft;

	if (!type_known(op->type))
		return "unknown operation type";
	r = &rules[op->type];
	if (op->flags & ~r->flags_ok)
		return "flags not allowed for the type";
	if (op->valid & ~r->valid_ok)
		return "valid bits not allowed for the type";
	if (!ts_ok(&op->atime) || !ts_ok(&op->mtime) || !ts_ok(&op->p1_mtime) ||
	    !ts_ok(&op->p2_mtime))
		return "nanoseconds out of range";
	if (op->data_len > r->data_max)
		return "data too long for the type";
	if (r->need_fh && op->fh == 0)
		return "missing handle";
	switch (r->p1) {
	case P_NO:
		if (op->path1_len)
			return "unexpected path";
		break;
	case P_YES:
		if (op->type == SK_RMSG_OPEN && (op->flags & SK_RO_ORPHAN)) {
			if (op->path1_len)
				return "orphan open with a path";
			break;
		}
		if (!sk_rmsg_path_ok(op->path1, op->path1_len, false))
			return "bad path";
		break;
	case P_ROOT_OK:
		if (!sk_rmsg_path_ok(op->path1, op->path1_len, true))
			return "bad path";
		break;
	case P_OR_FH:
		if (op->fh && op->path1_len)
			return "both handle and path";
		if (!op->fh && !sk_rmsg_path_ok(op->path1, op->path1_len, true))
			return "bad path";
		break;
	}
	if (r->p2 == P_YES || r->p2 == P_ROOT_OK) {
		if (!sk_rmsg_path_ok(op->path2, op->path2_len, r->p2 == P_ROOT_OK))
			return "bad second path";
	} else if (op->path2_len) {
		return "unexpected second path";
	}
	if (r->name) {
		if (op->name_len == 0 || op->name_len > SK_RMSG_NAME_MAX ||
		    memchr(op->name, '\0', op->name_len))
			return "bad attribute name";
	} else if (op->name_len) {
		return "unexpected name";
	}
	ft = op->mode & S_IFMT;
	switch (op->type) {
	case SK_RMSG_START:
		if ((op->flags & SK_START_MODE_MASK) > SK_REPL_ASYNC)
			return "unknown mode";
		if (op->data_len != 0 && op->data_len != SK_GEN_WIRE_LEN)
			return "generation set of the wrong size";
		break;
	case SK_RMSG_CREATE:
		if (ft != S_IFREG || (op->mode & ~(S_IFMT | 07777)))
			return "create of a non-regular file";
		if ((op->flags & SK_RO_ASCALLER) ? op->len > 0777 : op->len != 0)
			return "bad umask";
		break;
	case SK_RMSG_MKDIR:
		if ((op->mode & ~07777u) != 0)
			return "mkdir mode has type bits";
		break;
	case SK_RMSG_MKNOD:
		if ((ft != S_IFREG && ft != S_IFIFO && ft != S_IFSOCK && ft != S_IFCHR &&
		     ft != S_IFBLK) ||
		    (op->mode & ~(S_IFMT | 07777)))
			return "bad mknod mode";
		break;
	case SK_RMSG_SYMLINK:
		if (op->data_len == 0 || memchr(op->data, '\0', op->data_len))
			return "bad symlink target";
		break;
	case SK_RMSG_SETATTR:
	case SK_RMSG_RS_META:
		if ((op->valid & SK_RV_MODE) && (op->mode & ~07777u))
			return "mode has type bits";
		/* the size becomes an off_t: beyond 2^62 it would turn negative or overflow */
		if ((op->valid & SK_RV_SIZE) && op->len > (1ull << 62))
			return "bad size";
		break;
	case SK_RMSG_RENAME:
		if ((op->flags & RENAME_NOREPLACE) && (op->flags & RENAME_EXCHANGE))
			return "noreplace with exchange";
		break;
	case SK_RMSG_FALLOCATE:
	case SK_RMSG_COPY:
		if (op->len == 0 || op->len > (1ull << 40) || op->off > (1ull << 62) ||
		    op->off2 > (1ull << 62))
			return "bad range";
		if (op->type == SK_RMSG_COPY && op->fh2 == 0)
			return "missing output handle";
		break;
	case SK_RMSG_WRITE:
	case SK_RMSG_RS_DATA:
		if (op->off > (1ull << 62))
			return "bad offset";
		break;
	case SK_RMSG_RS_SUMSREQ:
		if (op->off % SK_RMSG_BLOCK || op->len == 0 ||
		    op->len > (uint64_t)SK_RMSG_SUMS_MAX * SK_RMSG_BLOCK)
			return "bad checksum range";
		break;
	default:
		break;
	}
	return NULL;
}

long sk_rmsg_op_encode(const struct sk_rmsg_op *op, uint8_t *hdr, size_t cap)
{
	size_t need = SK_RMSG_OP_HDR + (size_t)op->path1_len + op->path2_len + op->name_len;
	uint8_t *p = hdr;

	if (op_check(op))
		return -EINVAL;
	if (need + op->data_len > SK_PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (cap < need)
		return -ENOSPC;
	sk_put_u64(p + 0, op->fh);
	sk_put_u64(p + 8, op->fh2);
	sk_put_u64(p + 16, op->off);
	sk_put_u64(p + 24, op->off2);
	sk_put_u64(p + 32, op->len);
	sk_put_u64(p + 40, op->rdev);
	sk_put_u32(p + 48, op->mode);
	sk_put_u32(p + 52, op->uid);
	sk_put_u32(p + 56, op->gid);
	sk_put_u32(p + 60, op->flags);
	sk_put_u32(p + 64, op->valid);
	put_ts(p + 68, &op->atime);
	put_ts(p + 80, &op->mtime);
	put_ts(p + 92, &op->p1_mtime);
	put_ts(p + 104, &op->p2_mtime);
	sk_put_u16(p + 116, op->path1_len);
	sk_put_u16(p + 118, op->path2_len);
	sk_put_u16(p + 120, op->name_len);
	sk_put_u16(p + 122, 0);
	sk_put_u32(p + 124, op->data_len);
	p += SK_RMSG_OP_HDR;
	if (op->path1_len)
		memcpy(p, op->path1, op->path1_len);
	p += op->path1_len;
	if (op->path2_len)
		memcpy(p, op->path2, op->path2_len);
	p += op->path2_len;
	if (op->name_len)
		memcpy(p, op->name, op->name_len);
	p += op->name_len;
	return (long)(p - hdr);
}

int sk_rmsg_op_decode(uint8_t type, const uint8_t *p, size_t n, struct sk_rmsg_op *op,
		      const char **why_text)
{
	size_t strs;
	const char *why;

	memset(op, 0, sizeof(*op));
	if (!type_known(type)) {
		*why_text = "unknown operation type";
		return -EBADMSG;
	}
	if (n < SK_RMSG_OP_HDR) {
		*why_text = "payload shorter than the operation header";
		return -EBADMSG;
	}
	op->type = type;
	op->fh = sk_get_u64(p + 0);
	op->fh2 = sk_get_u64(p + 8);
	op->off = sk_get_u64(p + 16);
	op->off2 = sk_get_u64(p + 24);
	op->len = sk_get_u64(p + 32);
	op->rdev = sk_get_u64(p + 40);
	op->mode = sk_get_u32(p + 48);
	op->uid = sk_get_u32(p + 52);
	op->gid = sk_get_u32(p + 56);
	op->flags = sk_get_u32(p + 60);
	op->valid = sk_get_u32(p + 64);
	get_ts(p + 68, &op->atime);
	get_ts(p + 80, &op->mtime);
	get_ts(p + 92, &op->p1_mtime);
	get_ts(p + 104, &op->p2_mtime);
	op->path1_len = sk_get_u16(p + 116);
	op->path2_len = sk_get_u16(p + 118);
	op->name_len = sk_get_u16(p + 120);
	op->data_len = sk_get_u32(p + 124);
	if (sk_get_u16(p + 122) != 0) {
		*why_text = "reserved field not zero";
		return -EBADMSG;
	}
	strs = (size_t)op->path1_len + op->path2_len + op->name_len;
	/* Lengths must add up to exactly the payload: no trailing bytes, no overrun. */
	if ((uint64_t)SK_RMSG_OP_HDR + strs + op->data_len != n) {
		*why_text = "field lengths do not match the payload length";
		return -EBADMSG;
	}
	p += SK_RMSG_OP_HDR;
	op->path1 = (const char *)p;
	p += op->path1_len;
	op->path2 = (const char *)p;
	p += op->path2_len;
	op->name = (const char *)p;
	p += op->name_len;
	op->data = p;
	why = op_check(op);
	if (why) {
		*why_text = why;
		return -EBADMSG;
	}
	return 0;
}

void sk_rmsg_ack_encode(const struct sk_rmsg_ack *a, uint8_t *out)
{
	sk_put_u64(out, a->applied);
	sk_put_u64(out + 8, a->err_seq);
	sk_put_u32(out + 16, (uint32_t)a->err);
}

int sk_rmsg_ack_decode(const uint8_t *p, size_t n, struct sk_rmsg_ack *a)
{
	if (n != SK_RMSG_ACK_LEN)
		return -EBADMSG;
	a->applied = sk_get_u64(p);
	a->err_seq = sk_get_u64(p + 8);
	a->err = (int32_t)sk_get_u32(p + 16);
	if (a->err < 0 || a->err > 4095 || (a->err && !a->err_seq))
		return -EBADMSG;
	return 0;
}

void sk_rmsg_sums_encode_hdr(const struct sk_rmsg_sums *s, uint8_t *out)
{
	sk_put_u64(out, s->req);
	sk_put_u64(out + 8, s->off);
	sk_put_u64(out + 16, s->file_size);
	sk_put_u32(out + 24, (uint32_t)s->err);
	sk_put_u32(out + 28, s->count);
}

int sk_rmsg_sums_decode(const uint8_t *p, size_t n, struct sk_rmsg_sums *s)
{
	if (n < SK_RMSG_SUMS_HDR)
		return -EBADMSG;
	s->req = sk_get_u64(p);
	s->off = sk_get_u64(p + 8);
	s->file_size = sk_get_u64(p + 16);
	s->err = (int32_t)sk_get_u32(p + 24);
	s->count = sk_get_u32(p + 28);
	if (s->count > SK_RMSG_SUMS_MAX || s->off % SK_RMSG_BLOCK || s->err < 0 || s->err > 4095 ||
	    (s->err && s->count))
		return -EBADMSG;
	if (n != SK_RMSG_SUMS_HDR + (size_t)s->count * SK_RMSG_SUM_LEN)
		return -EBADMSG;
	s->sums = p + SK_RMSG_SUMS_HDR;
	return 0;
}

void sk_rmsg_rs_empty_encode(const struct sk_rmsg_rs_empty *a, uint8_t out[SK_RMSG_RS_EMPTY_LEN])
{
	sk_put_u64(out, a->req);
	sk_put_u32(out + 8, a->count);
	sk_put_u64(out + 12, a->bits);
}

int sk_rmsg_rs_empty_decode(const uint8_t *p, size_t n, struct sk_rmsg_rs_empty *a)
{
	if (n != SK_RMSG_RS_EMPTY_LEN)
		return -EBADMSG;
	a->req = sk_get_u64(p);
	a->count = sk_get_u32(p + 8);
	a->bits = sk_get_u64(p + 12);
	if (a->req == 0 || a->count > SK_RMSG_RS_EMPTY_ENTRIES ||
	    (a->count < 64 && (a->bits >> a->count) != 0))
		return -EBADMSG;
	return 0;
}

long sk_rmsg_dirent_put(const struct sk_rmsg_dirent *e, uint8_t *out, size_t cap)
{
	size_t need = 2 + (size_t)e->name_len + 4 * 3 + 8 * 2 + 4 + 2 + e->target_len;
	uint8_t *p = out;

	if (!sk_rmsg_name_ok(e->name, e->name_len) || e->target_len > SK_RMSG_PATH_MAX)
		return -EINVAL;
	if (cap < need)
		return -ENOSPC;
	sk_put_u16(p, e->name_len);
	memcpy(p + 2, e->name, e->name_len);
	p += 2 + e->name_len;
	sk_put_u32(p, e->mode);
	sk_put_u32(p + 4, e->uid);
	sk_put_u32(p + 8, e->gid);
	sk_put_u64(p + 12, e->rdev);
	sk_put_u64(p + 20, e->ino);
	sk_put_u32(p + 28, e->nlink);
	sk_put_u16(p + 32, e->target_len);
	p += 34;
	if (e->target_len)
		memcpy(p, e->target, e->target_len);
	return (long)need;
}

int sk_rmsg_dirent_next(struct sk_rd *r, struct sk_rmsg_dirent *e)
{
	uint32_t ft;

	if (r->err)
		return -EBADMSG;
	if (r->left == 0)
		return 0;
	e->name_len = sk_rd_u16(r);
	e->name = (const char *)sk_rd_bytes(r, e->name_len);
	e->mode = sk_rd_u32(r);
	e->uid = sk_rd_u32(r);
	e->gid = sk_rd_u32(r);
	e->rdev = sk_rd_u64(r);
	e->ino = sk_rd_u64(r);
	e->nlink = sk_rd_u32(r);
	e->target_len = sk_rd_u16(r);
	/* bounded before the bytes are taken: a target lands in a PATH_MAX buffer */
	if (e->target_len > SK_RMSG_PATH_MAX)
		return -EBADMSG;
	e->target = (const char *)sk_rd_bytes(r, e->target_len);
	if (r->err || !e->name)
		return -EBADMSG;
	if (!sk_rmsg_name_ok(e->name, e->name_len))
		return -EBADMSG;
	ft = e->mode & S_IFMT;
	if (e->mode & ~(S_IFMT | 07777))
		return -EBADMSG;
	if (ft != S_IFREG && ft != S_IFDIR && ft != S_IFLNK && ft != S_IFIFO && ft != S_IFSOCK &&
	    ft != S_IFCHR && ft != S_IFBLK)
		return -EBADMSG;
	if (ft == S_IFLNK) {
		if (e->target_len == 0 || memchr(e->target, '\0', e->target_len))
			return -EBADMSG;
	} else if (e->target_len) {
		return -EBADMSG;
	}
	return 1;
}

/* ---- RS_DIR entries with metadata (SK_RO_DMETA) ---- */

long sk_rmsg_dirent_meta_put(const struct sk_rmsg_dirent *e, const struct sk_rmsg_dmeta *m,
			     uint8_t *out, size_t cap)
{
	long n;

	if ((m->flags & ~SK_RD_COMPLETE) || !ts_ok(&m->atime) || !ts_ok(&m->mtime) ||
	    ((m->flags & SK_RD_COMPLETE) && ((e->mode & S_IFMT) != S_IFREG || e->nlink != 1)))
		return -EINVAL;
	n = sk_rmsg_dirent_put(e, out, cap);
	if (n < 0)
		return n;
	if (cap - (size_t)n < SK_RMSG_DMETA_LEN)
		return -ENOSPC;
	sk_put_u32(out + n, m->flags);
	put_ts(out + n + 4, &m->atime);
	put_ts(out + n + 16, &m->mtime);
	return n + SK_RMSG_DMETA_LEN;
}

int sk_rmsg_dirent_meta_next(struct sk_rd *r, struct sk_rmsg_dirent *e, struct sk_rmsg_dmeta *m)
{
	const uint8_t *p;
	int rc = sk_rmsg_dirent_next(r, e);

	if (rc <= 0)
		return rc;
	p = sk_rd_bytes(r, SK_RMSG_DMETA_LEN);
	if (!p)
		return -EBADMSG;
	m->flags = sk_get_u32(p);
	get_ts(p + 4, &m->atime);
	get_ts(p + 16, &m->mtime);
	if ((m->flags & ~SK_RD_COMPLETE) || !ts_ok(&m->atime) || !ts_ok(&m->mtime))
		return -EBADMSG;
	if ((m->flags & SK_RD_COMPLETE) && ((e->mode & S_IFMT) != S_IFREG || e->nlink != 1))
		return -EBADMSG;
	return 1;
}

/* ---- OWNLIST: the secondary's own changes, by path ---- */

void sk_rmsg_own_hdr(uint32_t flags, uint32_t count, uint8_t *out)
{
	sk_put_u32(out, flags);
	sk_put_u32(out + 4, count);
}

static bool own_entry_ok(uint8_t kind, const char *path, size_t len)
{
	if (kind != SK_OWN_FILE && kind != SK_OWN_DIR && kind != SK_OWN_WALK)
		return false;
	return sk_rmsg_path_ok(path, len, kind != SK_OWN_FILE);
}

long sk_rmsg_own_put(uint8_t kind, const char *path, size_t len, uint8_t *out, size_t cap)
{
	if (!own_entry_ok(kind, path, len))
		return -EINVAL;
	if (cap < 3 + len)
		return -ENOSPC;
	out[0] = kind;
	sk_put_u16(out + 1, (uint16_t)len);
	memcpy(out + 3, path, len);
	return (long)(3 + len);
}

int sk_rmsg_own_next(struct sk_rd *r, uint8_t *kind, const char **path, uint16_t *len)
{
	if (r->err)
		return -EBADMSG;
	if (r->left == 0)
		return 0;
	*kind = sk_rd_u8(r);
	*len = sk_rd_u16(r);
	/* bounded before the bytes are taken: a path lands in a PATH_MAX buffer */
	if (r->err || *len > SK_RMSG_PATH_MAX)
		return -EBADMSG;
	*path = (const char *)sk_rd_bytes(r, *len);
	if (r->err || (*len && !*path) || !own_entry_ok(*kind, *path ? *path : "", *len))
		return -EBADMSG;
	return 1;
}

int sk_rmsg_own_decode(const uint8_t *p, size_t n, uint32_t *flags, uint32_t *count, struct sk_rd *r)
{
	struct sk_rd all;
	uint32_t k = 0;
	uint8_t kind;
	const char *path;
	uint16_t len;
	int rc;

	if (n < SK_OWN_HDR || n > SK_OWN_FRAME_MAX)
		return -EBADMSG;
	*flags = sk_get_u32(p);
	*count = sk_get_u32(p + 4);
	if (*flags & ~(SK_OWN_F_LAST | SK_OWN_F_UNKNOWN) || *count > n / 3)
		return -EBADMSG;
	sk_rd_init(&all, p + SK_OWN_HDR, n - SK_OWN_HDR);
	while ((rc = sk_rmsg_own_next(&all, &kind, &path, &len)) == 1)
		k++;
	if (rc < 0 || k != *count)
		return -EBADMSG;
	sk_rd_init(r, p + SK_OWN_HDR, n - SK_OWN_HDR);
	return 0;
}

long sk_rmsg_xattr_put(const char *name, size_t name_len, const void *val, size_t val_len,
		       uint8_t *out, size_t cap)
{
	size_t need = 1 + name_len + 4 + val_len;

	if (name_len == 0 || name_len > SK_RMSG_NAME_MAX || memchr(name, '\0', name_len) ||
	    val_len > SK_RMSG_XATTR_VAL_MAX)
		return -EINVAL;
	if (cap < need)
		return -ENOSPC;
	out[0] = (uint8_t)name_len;
	memcpy(out + 1, name, name_len);
	sk_put_u32(out + 1 + name_len, (uint32_t)val_len);
	if (val_len)
		memcpy(out + 5 + name_len, val, val_len);
	return (long)need;
}

int sk_rmsg_xattr_next(struct sk_rd *r, const char **name, uint8_t *name_len,
		       const uint8_t **val, uint32_t *val_len)
{
	if (r->err)
		return -EBADMSG;
	if (r->left == 0)
		return 0;
	*name_len = sk_rd_u8(r);
	*name = (const char *)sk_rd_bytes(r, *name_len);
	*val_len = sk_rd_u32(r);
	if (r->err || *val_len > SK_RMSG_XATTR_VAL_MAX)
		return -EBADMSG;
	*val = sk_rd_bytes(r, *val_len);
	/* name_len is a u8: at most SK_RMSG_NAME_MAX, it fits a NAME_MAX + 1 buffer */
	if (r->err || !*name || *name_len == 0 || memchr(*name, '\0', *name_len))
		return -EBADMSG;
	return 1;
}

int sk_rctl_parse(const char *line, size_t len, struct sk_rctl_req *req, char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *o = NULL, *v;
	const char *s;
	int rc = -EINVAL;

	memset(req, 0, sizeof(*req));
	if (len > SK_RCTL_LINE_MAX) {
		snprintf(err, errlen, "request longer than %u bytes", SK_RCTL_LINE_MAX);
		return -EINVAL;
	}
	tok = json_tokener_new_ex(8);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, line, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		snprintf(err, errlen, "not one complete JSON value");
		goto out;
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "request is not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(o, "cmd", &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "\"cmd\" missing or not a string");
		goto out;
	}
	s = json_object_get_string(v);
	if (strcmp(s, "status") == 0) {
		if (json_object_object_length(o) != 1) {
			snprintf(err, errlen, "status takes no arguments");
			goto out;
		}
		req->cmd = SK_RCTL_STATUS;
	} else if (strcmp(s, "role") == 0) {
		if (json_object_object_length(o) != 2 ||
		    !json_object_object_get_ex(o, "role", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			snprintf(err, errlen, "role needs exactly \"role\": \"primary\"|\"secondary\"");
			goto out;
		}
		s = json_object_get_string(v);
		if (strcmp(s, "primary") == 0)
			req->role = SK_RCTL_PRIMARY;
		else if (strcmp(s, "secondary") == 0)
			req->role = SK_RCTL_SECONDARY;
		else {
			snprintf(err, errlen, "role: unknown role");
			goto out;
		}
		req->cmd = SK_RCTL_ROLE;
	} else if (strcmp(s, "survivor") == 0) {
		if (json_object_object_length(o) != 1) {
			snprintf(err, errlen, "survivor takes no arguments");
			goto out;
		}
		req->cmd = SK_RCTL_SURVIVOR;
	} else if (strcmp(s, "lease") == 0) {
		if (sk_lease_ctl_from_json(o, &req->lease, err, errlen) < 0)
			goto out;
		req->cmd = SK_RCTL_LEASE;
	} else {
		snprintf(err, errlen, "unknown cmd");
		goto out;
	}
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}
