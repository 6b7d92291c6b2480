/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Helpers shared by the fuzz drivers: an invariant check that survives
 * NDEBUG, fuzzer-controlled split points, a growing byte buffer, and an
 * independent chunked-body decoder the drivers compare src/http.c against.
 * The drivers build both under libFuzzer (clang) and under replay.c (gcc).
 */
#ifndef SL_FUZZ_UTIL_H
#define SL_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/http.h"

/* The libFuzzer entry point every driver defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a bug in sluice (or the driver): report and abort,
 * in every build type, so libFuzzer and ctest both see a crash. */
#define SL_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            sl_fuzz_fail(__FILE__, __LINE__, #cond);                                               \
    } while (0)

void sl_fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* With SL_FUZZ_TRACE set in the environment, says how far each message got
 * (to check that a seed reaches what it was written for). */
void sl_fuzz_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * How the input is cut into reads. Mode 0: all at once; 1: one byte at a
 * time; 2: pieces of 1..64 bytes; 3: pieces of 0..7 bytes (0: the same
 * length is fed again, as after a spurious wakeup). The piece sizes come from
 * a small PRNG seeded by the control byte, so a given input always replays
 * the same way. After SL_FUZZ_MAX_READS reads of one head or body the rest
 * comes at once: a head is copied whole for every read, and 64 KiB in reads
 * of 3 bytes would make each run quadratic.
 */
#define SL_FUZZ_MAX_READS 256

struct sl_fuzz_split {
    unsigned mode;
    unsigned reads; /* since the last sl_fuzz_split_restart */
    uint64_t state;
};

void sl_fuzz_split_init(struct sl_fuzz_split *s, uint8_t control);
/* A new head or body starts: the read count starts again. */
void sl_fuzz_split_restart(struct sl_fuzz_split *s);
/* Next length to feed, in cur..limit (cur itself only in mode 3, and never
 * twice in a row at the limit); limit when cur == limit. */
size_t sl_fuzz_split_next(struct sl_fuzz_split *s, size_t cur, size_t limit);

struct sl_fuzz_buf {
    char *data;
    size_t len, cap;
};

void sl_fuzz_buf_add(struct sl_fuzz_buf *b, const void *data, size_t len);
void sl_fuzz_buf_free(struct sl_fuzz_buf *b);

/* A malloc'd copy of exactly `len` bytes, so ASan sees any read past them. */
char *sl_fuzz_copy(const void *data, size_t len);

/* Appends one chunk in our canonical framing (as proxy.c re-frames bodies). */
void sl_fuzz_frame_chunk(struct sl_fuzz_buf *out, const char *at, size_t len);

/*
 * Reference decoder for a chunked body (RFC 9112 section 7.1), written
 * apart from src/http.c: 1*HEXDIG size, optional BWS and ";" extensions of
 * non-control bytes, CRLF, data, CRLF ... last-chunk, trailer lines, CRLF.
 * Returns 1 with *consumed set when a whole body was found, 0 when the bytes
 * end first, -1 when they cannot be a chunked body.
 */
int sl_fuzz_dechunk(const char *p, size_t len, struct sl_fuzz_buf *out, size_t *consumed);

/* Every header name and value lies inside [base, base + len). */
void sl_fuzz_check_inside(const struct sl_header *headers, size_t n, const char *base, size_t len);

/* sl_http_is_hop_by_hop against the RFC 9110 section 7.6.1 list, and
 * sl_http_is_valid_traceparent / sl_http_is_valid_request_id against a
 * reference reading of their formats. */
void sl_fuzz_check_forwarding(const struct sl_header *headers, size_t n);

/*
 * Feeds the head at the start of `stream` (avail bytes) in the reads `split`
 * cuts, each from a fresh copy, up to h->max_size as proxy.c does. Returns
 * the sl_head_feed result; on SL_HEAD_DONE *head_buf holds a malloc'd copy of
 * exactly head_len bytes, and the fed copies were scribbled over.
 */
int sl_fuzz_read_head(struct sl_head *h, struct sl_fuzz_split *split, const char *stream,
                      size_t avail, char **head_buf);

/* Runs sl_head_feed_body over `len` bytes split by `split`, collecting the
 * decoded data in `decoded` and, as proxy.c does, each piece of it framed as
 * one chunk in `reframed`. Returns the bytes consumed, or -1 on a framing
 * error; *is_complete tells whether the message ended. When is_eof, the end
 * of the bytes is also the end of the stream (len == 0 is fed last). */
ssize_t sl_fuzz_feed_body(struct sl_head *h, struct sl_fuzz_split *split, const char *p,
                          size_t len, bool is_eof, struct sl_fuzz_buf *decoded,
                          struct sl_fuzz_buf *reframed, bool *is_complete);

/* A complete chunked body accepted by src/http.c: `raw` (consumed bytes)
 * must decode the same under the reference decoder, and `reframed` plus the
 * last chunk must parse back, through a fresh head, into the same bytes. */
void sl_fuzz_check_chunked(enum http_parser_type type, const char *raw, size_t raw_len,
                           const struct sl_fuzz_buf *decoded, struct sl_fuzz_buf *reframed);

#endif
