/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The phase chain: per-route tables built once per config generation, and
 * the runner that walks a request through its route's chain. The contract
 * is include/sluice/phase.h; the phases themselves live in src/phase_*.c.
 *
 * A synchronous decision is not a recursive call: the runner's loop passes
 * on_request a place on its own stack where sl_phase_pass leaves its mark,
 * and goes on with the next phase when on_request returns. So a chain of
 * phases that all decide at once costs one loop, and an answer given
 * synchronously returns through frames that no longer touch the run.
 */
#include "sluice/phase.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "util/alloc.h"

/* The phases a route may run, in the order they run: version policy (410 and
 * Deprecation before anything is spent), limits, then idempotency and cache
 * (after limits: hits are limited too, unless a limit says cache_hits =
 * false, which the limits phase asks the cache about; a limited request
 * claims no idempotency key). Idempotency before the cache: a replay is
 * answered from its own record and never looks at the cache, and a request
 * that claims a key goes on to the cache like any other.
 * A new phase is a file of its own and one line here. */
static const struct sl_phase *const builtin[] = {
    &sl_phase_lifecycle,
    &sl_phase_limit,
    &sl_phase_idem,
    &sl_phase_cache,
};

struct sl_phase_entry {
    const struct sl_phase *phase;
    void *conf;
    size_t state_off;
};

struct sl_phase_chain {
    struct sl_phase_entry *entries;
    unsigned n;
    size_t state_size;
    bool wants_body;
    bool wants_request_body;
};

struct sl_phase_table {
    size_t nchains;
    struct sl_phase_chain *chains;
};

enum { SYNC_NONE, SYNC_PASSED, SYNC_ANSWERED };

/* ---- tables ---------------------------------------------------------------- */

static void
chain_build(struct sl_phase_chain *chain, const struct sl_phase *const *phases, size_t nphases,
            const struct sl_phase_env *env, const struct sl_route_conf *route)
{
    const size_t align = 16;

    chain->entries = sl_xcalloc(nphases ? nphases : 1, sizeof(*chain->entries));
    for (size_t i = 0; i < nphases; i++) {
        struct sl_phase_entry *e = &chain->entries[chain->n];
        void *conf = NULL;

        if (phases[i]->setup != NULL && !phases[i]->setup(env, route, &conf))
            continue;
        e->phase = phases[i];
        e->conf = conf;
        e->state_off = chain->state_size;
        chain->state_size += (phases[i]->state_size + align - 1) & ~(align - 1);
        chain->wants_body |= phases[i]->on_response_body != NULL;
        chain->wants_request_body |= phases[i]->on_request_body != NULL;
        chain->n++;
    }
    /* A compiled-in phase set that does not fit is our bug, not input. */
    assert(chain->state_size <= SL_PHASE_STATE_MAX);
    if (chain->state_size > SL_PHASE_STATE_MAX)
        abort();
}

struct sl_phase_table *
sl_phase_table_new_with(const struct sl_phase *const *phases, size_t nphases,
                        const struct sl_phase_env *env)
{
    struct sl_phase_table *table = sl_xcalloc(1, sizeof(*table));
    size_t nroutes = env->cfg->nroutes;

    table->nchains = nroutes;
    table->chains = sl_xcalloc(nroutes ? nroutes : 1, sizeof(*table->chains));
    for (size_t i = 0; i < nroutes; i++)
        chain_build(&table->chains[i], phases, nphases, env, &env->cfg->routes[i]);
    return table;
}

struct sl_phase_table *
sl_phase_table_new(const struct sl_phase_env *env)
{
    return sl_phase_table_new_with(builtin, sizeof(builtin) / sizeof(builtin[0]), env);
}

void
sl_phase_table_free(struct sl_phase_table *table)
{
    if (table == NULL)
        return;
    /* Every teardown first: one may complete an abandoned run, whose last
     * on_end still reads its chain. */
    for (size_t i = 0; i < table->nchains; i++) {
        const struct sl_phase_chain *chain = &table->chains[i];
        for (unsigned j = 0; j < chain->n; j++) {
            if (chain->entries[j].phase->teardown != NULL)
                chain->entries[j].phase->teardown(chain->entries[j].conf);
        }
    }
    for (size_t i = 0; i < table->nchains; i++)
        free(table->chains[i].entries);
    free(table->chains);
    free(table);
}

const struct sl_phase_chain *
sl_phase_table_chain(const struct sl_phase_table *table, size_t route_index)
{
    return &table->chains[route_index];
}

bool
sl_phase_chain_wants_body(const struct sl_phase_chain *chain)
{
    return chain != NULL && chain->wants_body;
}

bool
sl_phase_chain_wants_request_body(const struct sl_phase_chain *chain)
{
    return chain != NULL && chain->wants_request_body;
}

/* ---- runs ------------------------------------------------------------------ */

static void *
state_of(struct sl_phase_run *run, const struct sl_phase_entry *e)
{
    return run->state + e->state_off;
}

void
sl_phase_run_init(struct sl_phase_run *run)
{
    memset(run, 0, sizeof(*run));
}

static void
drop_response(struct sl_phase_run *run)
{
    if (run->has_response && run->response.release != NULL)
        run->response.release(run->response.release_arg);
    run->has_response = false;
}

void
sl_phase_run_set_reader(struct sl_phase_run *run, bool (*read)(void *arg), void *arg)
{
    run->reader = read;
    run->reader_arg = arg;
}

void
sl_phase_run_fini(struct sl_phase_run *run)
{
    assert(!run->is_pending);
    drop_response(run);
    free(run->headers);
    run->headers = NULL;
    free(run->up_headers);
    run->up_headers = NULL;
}

static void
end_phase(struct sl_phase_run *run, unsigned i, const char *reason, struct sl_access_entry *log)
{
    const struct sl_phase_entry *e = &run->chain->entries[i];

    if (e->phase->on_end != NULL)
        e->phase->on_end(run, e->conf, state_of(run, e), reason, log);
}

/* The walk from phase run->next on; returns as soon as one has not passed. */
static void
run_from(struct sl_phase_run *run)
{
    const struct sl_phase_chain *chain = run->chain;

    while (run->next < chain->n) {
        const struct sl_phase_entry *e = &chain->entries[run->next];
        int result = SYNC_NONE;

        run->sync_result = &result;
        run->is_pending = true;
        run->nstarted = run->next + 1;
        e->phase->on_request(run, e->conf, state_of(run, e));
        if (result == SYNC_ANSWERED)
            return; /* done was called: the run may be another request's now */
        if (result == SYNC_NONE) {
            run->sync_result = NULL; /* pending: the continuation comes later */
            return;
        }
        run->next++;
    }
    run->done(run->done_arg, SL_PHASE_PASSED, 0, NULL, 0);
}

void
sl_phase_run_start(struct sl_phase_run *run, const struct sl_phase_chain *chain,
                   const struct sl_request *req, sl_phase_done_cb *done, void *arg)
{
    assert(!run->is_pending);
    run->chain = chain;
    run->req = req;
    run->done = done;
    run->done_arg = arg;
    run->next = 0;
    run->nstarted = 0;
    run->sync_result = NULL;
    run->is_ended = false;
    run->end_reason = NULL;
    run->headers_len = 0;
    run->up_headers_len = 0;
    run->nhidden = 0;
    run->is_reading_body = false;
    drop_response(run);
    memset(run->state, 0, chain->state_size);
    run_from(run);
}

/* The request ended while the phase at run->next waited; it has now called
 * its continuation, which goes nowhere. */
static void
abandon(struct sl_phase_run *run)
{
    end_phase(run, run->next, run->end_reason, NULL);
    run->chain = NULL;
    run->done(run->done_arg, SL_PHASE_ABANDONED, 0, NULL, 0);
}

void
sl_phase_pass(struct sl_phase_run *run)
{
    assert(run->is_pending);
    run->is_pending = false;
    if (run->sync_result != NULL) {
        *run->sync_result = SYNC_PASSED;
        run->sync_result = NULL;
        return; /* run_from goes on when on_request returns */
    }
    if (run->is_ended) {
        abandon(run);
        return;
    }
    run->next++;
    run_from(run);
}

void
sl_phase_answer(struct sl_phase_run *run, int status, const char *body, size_t body_len)
{
    assert(run->is_pending);
    run->is_pending = false;
    if (run->sync_result != NULL) {
        *run->sync_result = SYNC_ANSWERED;
        run->sync_result = NULL;
    } else if (run->is_ended) {
        abandon(run);
        return;
    }
    run->done(run->done_arg, SL_PHASE_ANSWERED, status, body, body_len);
}

void
sl_phase_respond(struct sl_phase_run *run, const struct sl_phase_response *resp)
{
    assert(run->is_pending);
    run->is_pending = false;
    if (run->sync_result != NULL) {
        *run->sync_result = SYNC_ANSWERED;
        run->sync_result = NULL;
    } else if (run->is_ended) {
        if (resp->release != NULL)
            resp->release(resp->release_arg);
        abandon(run);
        return;
    }
    drop_response(run);
    run->response = *resp;
    run->has_response = true;
    run->done(run->done_arg, SL_PHASE_RESPONDED, resp->status, NULL, 0);
}

void
sl_phase_replace(struct sl_phase_run *run, const struct sl_phase_response *resp)
{
    drop_response(run);
    run->response = *resp;
    run->has_response = true;
}

bool
sl_phase_take_response(struct sl_phase_run *run, struct sl_phase_response *resp)
{
    if (!run->has_response)
        return false;
    *resp = run->response;
    run->has_response = false;
    return true;
}

/* Grows to the largest set of lines seen on this connection, then stays. */
static void
append_lines(char **buf, size_t *len, size_t *cap, const char *lines, size_t n)
{
    if (n == 0)
        return;
    if (*len + n > *cap) {
        *cap = *len + n;
        *buf = sl_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, lines, n);
    *len += n;
}

void
sl_phase_attach(struct sl_phase_run *run, const char *lines, size_t len)
{
    append_lines(&run->headers, &run->headers_len, &run->headers_cap, lines, len);
}

void
sl_phase_attach_upstream(struct sl_phase_run *run, const char *lines, size_t len)
{
    append_lines(&run->up_headers, &run->up_headers_len, &run->up_headers_cap, lines, len);
}

bool
sl_phase_hide_upstream(struct sl_phase_run *run, const char *name, size_t len)
{
    if (run->nhidden >= SL_PHASE_HIDE_MAX)
        return false;
    run->hidden[run->nhidden].name = name;
    run->hidden[run->nhidden].len = len;
    run->nhidden++;
    return true;
}

bool
sl_phase_is_hidden(const struct sl_phase_run *run, const struct sl_header *h)
{
    for (unsigned i = 0; i < run->nhidden; i++) {
        if (sl_http_name_is(h, run->hidden[i].name, run->hidden[i].len))
            return true;
    }
    return false;
}

const char *
sl_phase_upstream_headers(const struct sl_phase_run *run, size_t *len)
{
    *len = run->up_headers_len;
    return run->up_headers;
}

const struct sl_request *
sl_phase_request(const struct sl_phase_run *run)
{
    return run->req;
}

bool
sl_phase_is_abandoned(const struct sl_phase_run *run)
{
    return run->is_ended;
}

const char *
sl_phase_headers(const struct sl_phase_run *run, size_t *len)
{
    *len = run->headers_len;
    return run->headers;
}

void
sl_phase_response_head(struct sl_phase_run *run, int status, const struct sl_header *headers,
                       size_t nheaders)
{
    for (unsigned i = 0; run->chain != NULL && i < run->next; i++) {
        const struct sl_phase_entry *e = &run->chain->entries[i];
        if (e->phase->on_response_head != NULL)
            e->phase->on_response_head(run, e->conf, state_of(run, e), status, headers,
                                       nheaders);
    }
}

void
sl_phase_upstream_error(struct sl_phase_run *run, int status)
{
    for (unsigned i = 0; run->chain != NULL && i < run->next; i++) {
        const struct sl_phase_entry *e = &run->chain->entries[i];
        if (e->phase->on_upstream_error != NULL)
            e->phase->on_upstream_error(run, e->conf, state_of(run, e), status);
    }
}

void
sl_phase_response_body(struct sl_phase_run *run, const char *at, size_t len)
{
    for (unsigned i = 0; run->chain != NULL && i < run->next; i++) {
        const struct sl_phase_entry *e = &run->chain->entries[i];
        if (e->phase->on_response_body != NULL)
            e->phase->on_response_body(run, e->conf, state_of(run, e), at, len);
    }
}

bool
sl_phase_read_body(struct sl_phase_run *run)
{
    assert(run->is_pending);
    if (run->reader == NULL || run->is_reading_body)
        return false;
    run->is_reading_body = true;
    if (!run->reader(run->reader_arg)) {
        run->is_reading_body = false;
        return false;
    }
    return true;
}

bool
sl_phase_is_reading_body(const struct sl_phase_run *run)
{
    return run->chain != NULL && run->is_reading_body;
}

void
sl_phase_request_body(struct sl_phase_run *run, const char *at, size_t len)
{
    unsigned from = 0, to = run->next;

    if (run->chain == NULL)
        return;
    if (run->is_reading_body) {
        from = run->next;
        to = run->next + 1;
    }
    for (unsigned i = from; i < to && i < run->chain->n; i++) {
        const struct sl_phase_entry *e = &run->chain->entries[i];
        if (e->phase->on_request_body != NULL)
            e->phase->on_request_body(run, e->conf, state_of(run, e), at, len);
    }
}

void
sl_phase_request_body_end(struct sl_phase_run *run, bool is_complete)
{
    const struct sl_phase_entry *e;

    if (run->chain == NULL || !run->is_reading_body)
        return;
    run->is_reading_body = false;
    e = &run->chain->entries[run->next];
    e->phase->on_request_body_end(run, e->conf, state_of(run, e), is_complete);
}

void
sl_phase_request_body_done(struct sl_phase_run *run)
{
    for (unsigned i = 0; run->chain != NULL && !run->is_reading_body && i < run->next; i++) {
        const struct sl_phase_entry *e = &run->chain->entries[i];
        if (e->phase->on_request_body_end != NULL)
            e->phase->on_request_body_end(run, e->conf, state_of(run, e), true);
    }
}

void
sl_phase_run_end(struct sl_phase_run *run, const char *reason, struct sl_access_entry *log)
{
    unsigned ndecided;

    if (run->chain == NULL || run->is_ended)
        return;
    ndecided = run->is_pending ? run->nstarted - 1 : run->nstarted;
    for (unsigned i = 0; i < ndecided; i++)
        end_phase(run, i, reason, log);
    if (run->is_pending) {
        run->is_ended = true;
        run->end_reason = reason;
        /* a phase waiting for a body that will never come is told now; its
         * continuation then abandons the run */
        sl_phase_request_body_end(run, false);
        return;
    }
    run->chain = NULL;
}
