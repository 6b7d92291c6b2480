/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Redis Cluster key slots: which of the 16384 slots a key lives in, as
 * the cluster computes it (CRC16 of the key, or of its hash tag, mod
 * 16384; the Redis Cluster specification, "Keys distribution model"), so
 * the cluster store can send a key to the node that owns it without a
 * MOVED round trip, and tell whether a request's keys share one slot.
 */
#ifndef SL_UTIL_REDIS_SLOT_H
#define SL_UTIL_REDIS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define SL_REDIS_SLOTS 16384

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection,
 * no final xor; crc16("123456789") is 0x31c3. */
uint16_t sl_redis_crc16(const char *buf, size_t len);

/*
 * The slot (0..16383) of the key [key, key+len), which may hold any bytes.
 * When the key has a '{' with a '}' after it and at least one byte between
 * the first '{' and the first '}' that follows, only those bytes (the hash
 * tag) are hashed: "{user1000}.following" and "user1000" share a slot.
 */
unsigned sl_redis_key_slot(const char *key, size_t len);

#endif
