/* libsk/proto_int.h: what proto.c shares with proto_hs.c (the handshake and socket helpers); not for other pieces. */
#ifndef SK_PROTO_INT_H
#define SK_PROTO_INT_H

#include "proto.h"

/* sodium_init once (idempotent, thread-safe); 0 or -EIO. */
int sk_proto_sodium_ready(void);
/* Keyed BLAKE2b-128 over hdr (SK_PROTO_HDR_LEN bytes) and iov: handshake frames and datagrams. */
void sk_proto_mac_iov(uint8_t *mac, const struct sk_key *key, const uint8_t *hdr,
		      const struct iovec *iov, int iovcnt);
int sk_proto_mac_ok(const struct sk_key *key, const uint8_t *hdr, const uint8_t *payload,
		    size_t len, const uint8_t *mac);
int sk_proto_type_handshake(uint8_t t);
/* Count a refused frame on c (may be NULL), set *why; returns -EBADMSG. */
int sk_chan_reject(struct sk_chan *c, enum sk_reject r, enum sk_reject *why);

#endif
