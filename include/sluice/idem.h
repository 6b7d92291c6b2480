/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Idempotency records (draft-ietf-httpapi-idempotency-key-header-06): what
 * the idempotency phase (src/phase_idem.c) keeps per key. A key is first
 * claimed by one request (in flight, under a claim token); when its response
 * completes, the claim becomes a record holding the request's fingerprint
 * and the response to replay; a failed request releases its claim so the
 * client may retry. Only the holder of a claim's token can complete or
 * release it, so a claim that expired (its instance died) and was taken
 * again is never overwritten by the late first holder.
 *
 * Two backends behind one set of calls: the embedded table (one per
 * process, shared by the workers: src/idem_table.c) and Redis (one script,
 * shared by every instance: src/idem_redis.c).
 */
#ifndef SL_IDEM_H
#define SL_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sha256.h"

#define SL_IDEM_TOKEN_LEN 16 /* bytes of a claim token */

enum sl_idem_result {
    SL_IDEM_CLAIMED,   /* the key was free: this request holds it now */
    SL_IDEM_IN_FLIGHT, /* another request holds it: 409 */
    SL_IDEM_DONE,      /* a completed record: replay it or 422 */
    SL_IDEM_FULL,      /* the embedded table has no room (only claims left) */
    SL_IDEM_ERROR,     /* the store did not answer */
};

/* A completed record, shared: hold a reference while its bytes are in use. */
struct sl_idem_record {
    _Atomic unsigned refs; /* the backend's */
    uint8_t fingerprint[SL_SHA256_LEN];
    size_t len;
    char response[]; /* the stored response, sl_idem_response_* format */
};

/* ---- keys, fingerprints and stored responses (src/idem_record.c) ------------ */

#define SL_IDEM_KEY_MAX 255 /* characters of an Idempotency-Key */

struct sl_buf;
struct sl_header;

/*
 * The key of an Idempotency-Key field value: a Structured Field String
 * (RFC 8941 section 3.3.3, the draft's form: "8e03978e-...") or, as many
 * clients send it, the bare characters. 1 to SL_IDEM_KEY_MAX visible ASCII
 * characters. Returns the key's length and points *key into value (the
 * quotes left out; a string with escapes is refused), or 0 when invalid.
 */
size_t sl_idem_parse_key(const char *value, size_t len, const char **key);

/*
 * The response kept for a key, as one byte string: "SSS HHH\n" (status,
 * length of the header block in decimal), the header lines ("Name:
 * value\r\n"...) without framing and hop-by-hop fields, then the body.
 * begin writes the head; the caller appends the body to the same buffer.
 * Returns -1 when the buffer's bound is passed.
 */
int sl_idem_response_begin(struct sl_buf *out, int status, const struct sl_header *headers,
                           size_t nheaders);
/* The parts of a kept response; false when the bytes are not one. */
struct sl_idem_response {
    int status;
    const char *headers;
    size_t headers_len;
    const char *body;
    size_t body_len;
};
bool sl_idem_response_parse(const char *data, size_t len, struct sl_idem_response *out);

/* ---- the embedded table ---------------------------------------------------- */

struct sl_idem_table;

/* A table that keeps at most max_bytes of keys and records. Thread-safe. */
struct sl_idem_table *sl_idem_table_new(size_t max_bytes);
void sl_idem_table_free(struct sl_idem_table *t);

/*
 * Claims `key` for lock_ms with `token`, unless a live claim or record has
 * it. SL_IDEM_DONE sets *record to a new reference (sl_idem_record_put).
 * Expired entries count as absent. When the table is full, completed
 * records go first, oldest first; claims are never evicted.
 */
enum sl_idem_result sl_idem_table_claim(struct sl_idem_table *t, const char *key,
                                        size_t key_len, const uint8_t *token,
                                        uint64_t lock_ms, const struct sl_idem_record **record);
/* The claim under `token` becomes a record for ttl_ms. False when the claim
 * is no longer this token's (expired, taken again) or there is no room. */
bool sl_idem_table_complete(struct sl_idem_table *t, const char *key, size_t key_len,
                            const uint8_t *token, const uint8_t *fingerprint,
                            const char *response, size_t len, uint64_t ttl_ms);
/* Drops the claim under `token` (not a record, nor another's claim). */
void sl_idem_table_release(struct sl_idem_table *t, const char *key, size_t key_len,
                           const uint8_t *token);
/* Entries and bytes held now, for metrics and tests. */
void sl_idem_table_usage(struct sl_idem_table *t, size_t *entries, size_t *bytes);

/* A record of `len` response bytes, one reference, fingerprint and bytes
 * to be filled in. */
struct sl_idem_record *sl_idem_record_new(size_t len);
/* Another reference, and releasing one (the last frees it). */
const struct sl_idem_record *sl_idem_record_get(const struct sl_idem_record *record);
void sl_idem_record_put(const struct sl_idem_record *record);

/* ---- Redis (src/idem_redis.c) -------------------------------------------------- */

struct redisReply;
struct sl_metrics_worker;
struct sl_store;
typedef void sl_store_reply_cb(void *arg, const struct redisReply *reply);

/* Claims the record `name` for lock_ms under `token`; cb gets the reply
 * (sl_idem_redis_claim_result reads it). -1 (cb never called) when the
 * store cannot take the command now. */
int sl_idem_redis_claim(struct sl_store *store, const char *name, size_t name_len,
                        const uint8_t *token, uint64_t lock_ms, sl_store_reply_cb *cb, void *arg);
/* The claim's outcome; SL_IDEM_DONE sets *record to a new reference. */
enum sl_idem_result sl_idem_redis_claim_result(const struct redisReply *reply,
                                               const struct sl_idem_record **record);
/* The claim under `token` becomes a record for ttl_ms (counted as stored, or
 * released when it was no longer the token's). Fire and forget. */
void sl_idem_redis_complete(struct sl_store *store, const char *name, size_t name_len,
                            const uint8_t *token, const uint8_t *fingerprint,
                            const char *response, size_t len, uint64_t ttl_ms,
                            struct sl_metrics_worker *metrics);
/* Drops the claim under `token`. Fire and forget. */
void sl_idem_redis_release(struct sl_store *store, const char *name, size_t name_len,
                           const uint8_t *token);

#endif
