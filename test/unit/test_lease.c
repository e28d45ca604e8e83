/* test/unit/test_lease.c: lease witness payloads, the grant table's rules, skfused's lease command. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "lease.h"

Test(lease_msg, req_roundtrip)
{
	struct sk_lease_req q = { .node = 2, .op = SK_LEASE_ACQUIRE, .module = 7, .nonce = 99 }, d;
	uint8_t b[64];

	cr_assert_eq(sk_lease_req_encode(&q, b, sizeof(b)), SK_LEASE_REQ_LEN);
	cr_assert_eq(sk_lease_req_decode(b, SK_LEASE_REQ_LEN, &d), 0);
	cr_assert_eq(d.node, 2);
	cr_assert_eq(d.op, SK_LEASE_ACQUIRE);
	cr_assert_eq(d.module, 7);
	cr_assert_eq(d.nonce, 99);
	cr_assert_eq(sk_lease_req_encode(&q, b, 15), -ENOSPC);
	q.module = 0;
	cr_assert_eq(sk_lease_req_encode(&q, b, sizeof(b)), -EINVAL);
}

Test(lease_msg, req_refused)
{
	struct sk_lease_req q = { .node = 2, .op = SK_LEASE_ACQUIRE, .module = 7, .nonce = 99 }, d;
	uint8_t b[64], c[64];

	sk_lease_req_encode(&q, b, sizeof(b));
	cr_assert_eq(sk_lease_req_decode(b, SK_LEASE_REQ_LEN - 1, &d), -EBADMSG, "short");
	cr_assert_eq(sk_lease_req_decode(b, SK_LEASE_REQ_LEN + 1, &d), -EBADMSG, "long");
	memcpy(c, b, sizeof(b));
	c[0] = 2;
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "version");
	memcpy(c, b, sizeof(b));
	c[1] = 0;
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "node 0");
	memcpy(c, b, sizeof(b));
	c[2] = 3;
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "op");
	memcpy(c, b, sizeof(b));
	c[3] = 4;
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "unknown flag");
	c[3] = SK_LEASE_F_PEER_OUT | SK_LEASE_F_FORCE;
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), 0, "known flags");
	cr_assert_eq(d.flags, SK_LEASE_F_PEER_OUT | SK_LEASE_F_FORCE);
	memcpy(c, b, sizeof(b));
	memset(c + 4, 0, 4);
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "module 0");
	memcpy(c, b, sizeof(b));
	memset(c + 8, 0, 8);
	cr_assert_eq(sk_lease_req_decode(c, SK_LEASE_REQ_LEN, &d), -EBADMSG, "nonce 0");
}

Test(lease_msg, reply_roundtrip_and_refused)
{
	struct sk_lease_reply r = { .witness = 3, .result = SK_LEASE_GRANTED, .holder = 1, .module = 7,
				    .nonce = 5, .valid_ms = 2000, .epoch = 4 }, d;
	uint8_t b[64], c[64];

	cr_assert_eq(sk_lease_reply_encode(&r, b, sizeof(b)), SK_LEASE_REPLY_LEN);
	cr_assert_eq(sk_lease_reply_decode(b, SK_LEASE_REPLY_LEN, &d), 0);
	cr_assert_eq(d.holder, 1);
	cr_assert_eq(d.valid_ms, 2000);
	cr_assert_eq(d.epoch, 4);
	cr_assert_eq(sk_lease_reply_decode(b, SK_LEASE_REPLY_LEN - 1, &d), -EBADMSG);
	memcpy(c, b, sizeof(b));
	c[2] = 9;
	cr_assert_eq(sk_lease_reply_decode(c, SK_LEASE_REPLY_LEN, &d), -EBADMSG, "result");
	memcpy(c, b, sizeof(b));
	c[3] = 0;
	cr_assert_eq(sk_lease_reply_decode(c, SK_LEASE_REPLY_LEN, &d), -EBADMSG, "grant without holder");
	memcpy(c, b, sizeof(b));
	sk_put_u32(c + 16, SK_LEASE_VALID_MAX + 1);
	cr_assert_eq(sk_lease_reply_decode(c, SK_LEASE_REPLY_LEN, &d), -EBADMSG, "valid_ms bound");
	r.valid_ms = SK_LEASE_VALID_MAX + 1;
	cr_assert_eq(sk_lease_reply_encode(&r, b, sizeof(b)), -EINVAL);
}

static struct sk_lease_reply askf(struct sk_lease_table *t, uint64_t now, uint8_t node, uint8_t op,
				  uint8_t flags)
{
	struct sk_lease_req q = { .node = node, .op = op, .flags = flags, .module = 7, .nonce = 1 };
	struct sk_lease_reply r = { 0 };

	sk_lease_table_ask(t, now, &q, &r);
	return r;
}

static struct sk_lease_reply ask(struct sk_lease_table *t, uint64_t now, uint8_t node, uint8_t op)
{
	struct sk_lease_req q = { .node = node, .op = op, .module = 7, .nonce = 1 };
	struct sk_lease_reply r = { 0 };

	sk_lease_table_ask(t, now, &q, &r);
	return r;
}

Test(lease_table, one_holder_per_epoch)
{
	static struct sk_lease_table t;
	struct sk_lease_reply r;

	sk_lease_table_init(&t, 2000, 250, 1000);
	/* grace after the start: nothing granted before 1000 + 2000 + 250 */
	r = ask(&t, 1000, 1, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRACE);
	cr_assert_eq(r.valid_ms, 2250);
	r = ask(&t, 3249, 1, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRACE);
	r = ask(&t, 3250, 1, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRANTED);
	cr_assert_eq(r.holder, 1);
	cr_assert_eq(r.valid_ms, 2000);
	cr_assert_eq(r.epoch, 1);
	/* node 2 is refused while node 1 holds it and for the margin after it ends */
	r = ask(&t, 4000, 2, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_HELD);
	cr_assert_eq(r.holder, 1);
	cr_assert_eq(r.valid_ms, 5250 + 250 - 4000);
	/* node 1 renews: its lease runs from the renewal */
	r = ask(&t, 4500, 1, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRANTED);
	cr_assert_eq(r.epoch, 1, "a renewal keeps the epoch");
	r = ask(&t, 6500 + 249, 2, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_HELD, "still inside the margin");
	r = ask(&t, 6500 + 250, 2, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRANTED);
	cr_assert_eq(r.holder, 2);
	cr_assert_eq(r.epoch, 2);
	/* node 1 comes back: refused */
	r = ask(&t, 6800, 1, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_HELD);
	cr_assert_eq(r.holder, 2);
}

Test(lease_table, release_and_full)
{
	static struct sk_lease_table t;
	struct sk_lease_reply r;

	sk_lease_table_init(&t, 2000, 250, 0);
	cr_assert_eq(ask(&t, 3000, 1, SK_LEASE_ACQUIRE).result, SK_LEASE_GRANTED);
	/* a release by someone else changes nothing */
	cr_assert_eq(ask(&t, 3100, 2, SK_LEASE_RELEASE).result, SK_LEASE_RELEASED);
	cr_assert_eq(ask(&t, 3200, 2, SK_LEASE_ACQUIRE).result, SK_LEASE_HELD);
	/* the holder's release ends it at once; the next node still waits the margin */
	cr_assert_eq(ask(&t, 3300, 1, SK_LEASE_RELEASE).result, SK_LEASE_RELEASED);
	cr_assert_eq(ask(&t, 3400, 2, SK_LEASE_ACQUIRE).result, SK_LEASE_HELD);
	r = ask(&t, 3550, 2, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_GRANTED);
	/* the table is bounded */
	for (uint32_t m = 100; m < 100 + SK_LEASE_TABLE_MAX; m++) {
		struct sk_lease_req q = { .node = 1, .op = SK_LEASE_ACQUIRE, .module = m, .nonce = 1 };

		sk_lease_table_ask(&t, 4000, &q, &r);
	}
	cr_assert_eq(r.result, SK_LEASE_FULL);
}

static int ctl(const char *s, struct sk_lease_ctl *c, char *err)
{
	return sk_lease_ctl_parse(s, strlen(s), c, err, 160);
}

Test(lease_ctl, parse)
{
	struct sk_lease_ctl c;
	char err[160] = "";

	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":1500}", &c, err), 0);
	cr_assert_eq(c.valid_ms, 1500);
	cr_assert(!c.has_at);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":0,\"at_ms\":123456}", &c, err), 0);
	cr_assert(c.has_at);
	cr_assert_eq(c.at_ms, 123456);
	/* not a lease command: the other parser answers */
	cr_assert_eq(ctl("{\"cmd\":\"status\"}", &c, err), -ENOENT);
	cr_assert_eq(ctl("not json", &c, err), -ENOENT);
	cr_assert_eq(ctl("[\"lease\"]", &c, err), -ENOENT);
	/* a lease command that is wrong */
	cr_assert_eq(ctl("{\"cmd\":\"lease\"}", &c, err), -EINVAL);
	cr_assert(strstr(err, "valid_ms"), "%s", err);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":-1}", &c, err), -EINVAL);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":600001}", &c, err), -EINVAL);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":\"10\"}", &c, err), -EINVAL);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":99999999999999999999}", &c, err), -EINVAL);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":10,\"at_ms\":-5}", &c, err), -EINVAL);
	cr_assert_eq(ctl("{\"cmd\":\"lease\",\"valid_ms\":10,\"x\":1}", &c, err), -EINVAL);
	cr_assert(strstr(err, "only"), "%s", err);
}

Test(lease_table, holder_went_alone)
{
	static struct sk_lease_table t;
	struct sk_lease_reply r;

	sk_lease_table_init(&t, 2000, 250, 0);
	cr_assert_eq(ask(&t, 3000, 1, SK_LEASE_ACQUIRE).result, SK_LEASE_GRANTED);
	/* node 1 goes on alone: its renewals say its peer is behind */
	cr_assert_eq(askf(&t, 3500, 1, SK_LEASE_ACQUIRE, SK_LEASE_F_PEER_OUT).result, SK_LEASE_GRANTED);
	/* node 1 dies: long after its lease, node 2 (older copy) is refused */
	r = ask(&t, 20000, 2, SK_LEASE_ACQUIRE);
	cr_assert_eq(r.result, SK_LEASE_BEHIND);
	cr_assert_eq(r.holder, 1);
	/* ... unless the operator forces it */
	r = askf(&t, 20100, 2, SK_LEASE_ACQUIRE, SK_LEASE_F_FORCE);
	cr_assert_eq(r.result, SK_LEASE_GRANTED);
	cr_assert_eq(r.holder, 2);
	cr_assert_eq(r.epoch, 2);
	/* node 1 back in sync with its peer clears it: after a clean handover the other may take it */
	sk_lease_table_init(&t, 2000, 250, 0);
	cr_assert_eq(askf(&t, 3000, 1, SK_LEASE_ACQUIRE, SK_LEASE_F_PEER_OUT).result, SK_LEASE_GRANTED);
	cr_assert_eq(ask(&t, 3500, 1, SK_LEASE_ACQUIRE).result, SK_LEASE_GRANTED);
	cr_assert_eq(ask(&t, 9000, 2, SK_LEASE_ACQUIRE).result, SK_LEASE_GRANTED);
}
