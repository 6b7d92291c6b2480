/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A fake sl_store for limiter tests: token buckets kept in a small table with
 * time from sl_clock (so tests move a fake clock), every call recorded, and
 * knobs to fail, to answer later instead of at once, or to answer one call
 * with scripted results. Include fake_store.c from the test.
 */
#ifndef SL_FAKE_STORE_H
#define SL_FAKE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/store.h"

#define FAKE_MAX_BUCKETS 8
#define FAKE_MAX_CALLS 64
#define FAKE_MAX_KEYS 64
#define FAKE_KEY_MAX 256

struct fake_call {
    size_t n;
    char keys[FAKE_MAX_BUCKETS][FAKE_KEY_MAX];
    double costs[FAKE_MAX_BUCKETS];
};

struct fake_bucket {
    char key[FAKE_KEY_MAX];
    double tokens;
    uint64_t at_us;
};

struct fake_pending {
    sl_store_cb *cb;
    void *arg;
    enum sl_store_status status;
    bool is_admitted;
    struct sl_store_result results[FAKE_MAX_BUCKETS];
    size_t n;
};

struct fake_store {
    struct sl_store base;
    struct sl_store_ops ops;     /* a copy per fake, so each can have a name */
    enum sl_store_status fail;   /* != SL_STORE_OK: every call fails with it */
    bool is_up;                  /* what is_up reports */
    bool is_async;               /* hold answers until fake_store_flush */
    bool has_script;             /* answer the next call with `script` */
    bool script_admitted;
    struct sl_store_result script[FAKE_MAX_BUCKETS];
    size_t ncalls;               /* all calls, also past FAKE_MAX_CALLS */
    struct fake_call calls[FAKE_MAX_CALLS];
    struct fake_bucket table[FAKE_MAX_KEYS];
    size_t nkeys;
    struct fake_pending pending[FAKE_MAX_CALLS];
    size_t npending;
    bool *freed;                 /* set to true on free when not NULL */
};

struct fake_store *fake_store_new(const char *name);
/* Answers every held call, in order. */
void fake_store_flush(struct fake_store *fs);
/* Scripts the answer to the next call. */
void fake_store_script(struct fake_store *fs, bool is_admitted,
                       const struct sl_store_result *results, size_t n);
/* Tokens in a bucket as last written (-1 when the key was never seen). */
double fake_store_tokens(const struct fake_store *fs, const char *key);

#endif
