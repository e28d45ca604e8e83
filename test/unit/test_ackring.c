/* test/unit/test_ackring.c: fused/ackring.c, the primary's frames in flight and which request each ack answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "ackring.h"

/* Requests are opaque to the ring: distinct fake pointers stand for them. */
#define REQ(n) ((fuse_req_t)(uintptr_t)(0x1000 + (n)))

static struct fused_ackring ring;
static struct fused_ackring_due due[64];

static void setup8(void)
{
	cr_assert_eq(fused_ackring_init(&ring, 8), 0);
}

static void teardown(void)
{
	fused_ackring_free(&ring);
}

static struct fused_reply wr(size_t n)
{
	return (struct fused_reply){ .kind = R_WRITE, .written = n };
}

/* push a frame nobody holds: req answered by its ack with reply kind R_WRITE, written = tag */
static uint64_t push(fuse_req_t req, size_t tag, bool held)
{
	struct fused_reply r = wr(tag);

	cr_assert(fused_ackring_room(&ring));
	return fused_ackring_push(&ring, 100, 10, 2, SK_RMSG_WRITE, req, &r, held);
}

static long ack(uint64_t upto)
{
	return fused_ackring_ack(&ring, upto, 150, due, 64, NULL, NULL);
}

Test(ackring, in_order, .init = setup8, .fini = teardown)
{
	cr_assert_eq(push(REQ(1), 1, false), 1);
	cr_assert_eq(push(REQ(2), 2, false), 2);
	cr_assert_eq(push(REQ(3), 3, false), 3);
	cr_assert_eq(ring.bytes, 30);
	cr_assert_eq(ring.cost, 6);
	cr_assert_eq(ack(1), 1);
	cr_assert_eq(due[0].req, REQ(1));
	cr_assert_eq(due[0].r.written, 1);
	cr_assert_eq(ack(3), 2);
	cr_assert_eq(due[0].req, REQ(2));
	cr_assert_eq(due[1].req, REQ(3));
	cr_assert_eq(due[1].r.kind, R_WRITE);
	cr_assert_eq(ring.acked, 3);
	cr_assert_eq(ring.bytes, 0);
	cr_assert_eq(ring.cost, 0);
	cr_assert_null(fused_ackring_get(&ring, 3), "an acknowledged frame is no longer in flight");
}

Test(ackring, out_of_order_and_repeated_acks_answer_nobody_twice, .init = setup8, .fini = teardown)
{
	for (int i = 1; i <= 4; i++)
		push(REQ(i), (size_t)i, false);
	cr_assert_eq(ack(3), 3);
	cr_assert_eq(ack(2), 0, "an older ack retires nothing");
	cr_assert_eq(ack(3), 0, "a repeated ack retires nothing");
	cr_assert_eq(ring.acked, 3);
	cr_assert_eq(ack(4), 1);
	cr_assert_eq(due[0].req, REQ(4));
}

Test(ackring, ack_for_a_frame_never_sent_changes_nothing, .init = setup8, .fini = teardown)
{
	push(REQ(1), 1, false);
	push(REQ(2), 2, false);
	cr_assert_eq(ack(3), -EPROTO);
	cr_assert_eq(ack(UINT64_MAX), -EPROTO);
	cr_assert_eq(ring.acked, 0);
	cr_assert_eq(ring.bytes, 20);
	cr_assert_not_null(fused_ackring_get(&ring, 1));
	cr_assert_eq(ack(2), 2, "the genuine frames are still answered");
}

Test(ackring, wrap_around, .init = setup8, .fini = teardown)
{
	uint64_t seq = 0;

	/* 100 frames through 8 slots, acknowledged 5 (then 3) at a time */
	for (int round = 0; round < 20; round++) {
		int k = round % 2 ? 3 : 5;

		for (int i = 0; i < k; i++)
			cr_assert_eq(push(REQ(seq + 1 + i), seq + 1 + i, false), seq + 1 + i);
		cr_assert_eq(fused_ackring_get(&ring, seq + 1)->seq, seq + 1);
		cr_assert_eq(ack(seq + k), k);
		for (int i = 0; i < k; i++) {
			cr_assert_eq(due[i].req, REQ(seq + 1 + i), "round %d: frame %llu", round,
				     (unsigned long long)(seq + 1 + i));
			cr_assert_eq(due[i].r.written, seq + 1 + i);
		}
		seq += k;
	}
	cr_assert_eq(ring.sent, 80);
	cr_assert_eq(ring.acked, 80);
}

Test(ackring, full_ring_has_no_room_until_an_ack, .init = setup8, .fini = teardown)
{
	for (int i = 1; i <= 8; i++)
		push(REQ(i), (size_t)i, false);
	cr_assert_not(fused_ackring_room(&ring), "8 in flight in 8 slots");
	cr_assert_eq(ack(1), 1);
	cr_assert(fused_ackring_room(&ring));
	cr_assert_eq(push(REQ(9), 9, false), 9);
	cr_assert_not(fused_ackring_room(&ring));
	cr_assert_eq(ack(9), 8);
	cr_assert_eq(due[7].req, REQ(9), "the frame that reused slot 1 answers its own request");
}

Test(ackring, held_slot_is_not_reused_before_its_local_apply_ends, .init = setup8, .fini = teardown)
{
	fuse_req_t req;
	struct fused_reply r = wr(4096);

	push(REQ(1), 1, true);
	for (int i = 2; i <= 8; i++)
		push(NULL, 0, false);
	cr_assert_eq(ack(8), 0, "the held frame is answered by its local apply");
	cr_assert_not(fused_ackring_room(&ring), "seq 9 maps to the held slot of seq 1");
	cr_assert(fused_ackring_local_done(&ring, 1, &r, &req));
	cr_assert_eq(req, REQ(1));
	cr_assert(fused_ackring_room(&ring));
}

Test(ackring, the_right_waiter_is_answered_by_ack_or_local_apply, .init = setup8, .fini = teardown)
{
	struct fused_reply r3 = wr(333), r4 = wr(444), bad = { .kind = R_ERR, .err = EIO };
	fuse_req_t req = REQ(99);

	push(REQ(1), 1, true);   /* held: ack first, then the local apply answers */
	push(REQ(2), 2, false);  /* plain: the ack answers */
	push(NULL, 0, false);    /* nobody waits */
	push(REQ(3), 3, true);   /* held: local apply first, then the ack answers */
	cr_assert_not(fused_ackring_local_done(&ring, 4, &r3, &req), "not acked yet: the ack answers");
	cr_assert_null(req);
	cr_assert_eq(ack(3), 1);
	cr_assert_eq(due[0].req, REQ(2), "only the plain frame is due at ack 3");
	cr_assert(fused_ackring_local_done(&ring, 1, &bad, &req));
	cr_assert_eq(req, REQ(1), "frame 1's own request, after its ack");
	cr_assert_not(fused_ackring_local_done(&ring, 1, &bad, &req), "answered once");
	cr_assert_eq(ack(4), 1);
	cr_assert_eq(due[0].req, REQ(3));
	cr_assert_eq(due[0].r.written, 333, "with the reply its local apply gave");
	push(REQ(4), 4, true);
	cr_assert_not(fused_ackring_local_done(&ring, 7, &r4, &req), "a frame never sent");
	cr_assert_not(fused_ackring_local_done(&ring, 0, &r4, &req), "nothing sent (alone)");
}

Test(ackring, due_list_in_batches, .init = setup8, .fini = teardown)
{
	for (int i = 1; i <= 7; i++)
		push(REQ(i), (size_t)i, false);
	cr_assert_eq(fused_ackring_ack(&ring, 7, 150, due, 3, NULL, NULL), 3);
	cr_assert_eq(ring.acked, 3, "stopped where the list was full");
	cr_assert_eq(fused_ackring_ack(&ring, 7, 150, due, 3, NULL, NULL), 3);
	cr_assert_eq(due[0].req, REQ(4));
	cr_assert_eq(fused_ackring_ack(&ring, 7, 150, due, 3, NULL, NULL), 1);
	cr_assert_eq(due[0].req, REQ(7));
	cr_assert_eq(ring.acked, 7);
}

Test(ackring, peer_loss_then_new_connection, .init = setup8, .fini = teardown)
{
	struct fused_reply r = wr(7);
	fuse_req_t req;

	push(REQ(1), 1, true);
	push(REQ(2), 2, false);
	/* the peer is lost: everything sent is retired (answered: applied locally) */
	cr_assert_eq(ack(ring.sent), 1);
	fused_ackring_reset(&ring);
	cr_assert_eq(ring.sent, 0);
	cr_assert_eq(ring.acked, 0);
	cr_assert_not(fused_ackring_room(&ring), "seq 1 of the new connection waits for the held slot");
	cr_assert(fused_ackring_local_done(&ring, 1, &r, &req), "the held request of the lost connection");
	cr_assert_eq(req, REQ(1));
	cr_assert(fused_ackring_room(&ring));
	cr_assert_eq(push(REQ(5), 5, false), 1);
	cr_assert_eq(ack(1), 1);
	cr_assert_eq(due[0].req, REQ(5));
}

Test(ackring, latency_and_cost_of_what_was_retired, .init = setup8, .fini = teardown)
{
	uint64_t hist[FUSED_HIST] = { 0 };
	struct fused_ackring_stat st = { 0 };

	push(REQ(1), 1, false); /* t = 100 */
	push(NULL, 0, false);
	cr_assert_eq(fused_ackring_ack(&ring, 2, 100 + 1000, due, 64, hist, &st), 1);
	cr_assert_eq(hist[9], 1, "1000 us lands in [512, 1024)");
	uint64_t total = 0;
	for (int i = 0; i < FUSED_HIST; i++)
		total += hist[i];
	cr_assert_eq(total, 1, "only what a request waited for");
	cr_assert_eq(st.drained_cost, 4);
}

Test(ackring, bad_init)
{
	struct fused_ackring a;

	cr_assert_eq(fused_ackring_init(&a, 0), -EINVAL);
}
