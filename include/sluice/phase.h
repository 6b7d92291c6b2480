/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Phases: the steps a request goes through between its route match and the
 * upstream (version policy, limits, idempotency, cache), behind one small
 * interface. nginx's phase handlers and Envoy's HTTP filter chain are the
 * models, cut down to what C and our hot path allow: a phase is a table of
 * function pointers; each route gets, when a config generation is built, an
 * array of the phases that apply to it; a request walks that array without
 * allocating anything.
 *
 * A phase, given a request, does exactly one of:
 *   - answer it itself (sl_phase_answer): a status and a problem+json body;
 *     later phases do not run and the request never reaches an upstream;
 *   - answer it with a full response of its own (sl_phase_respond: status,
 *     header lines, a body it keeps alive until released), e.g. a cache hit;
 *   - let it pass (sl_phase_pass) to the next phase, and after the last one
 *     to the upstream;
 * and may, before either, attach header lines to the response sent to the
 * client (sl_phase_attach) and to the request sent upstream
 * (sl_phase_attach_upstream). A phase that asked for them is also told when
 * the upstream's response head and body pass, when the upstream failed, and
 * when the request ends, so a cache can store a response and an idempotency
 * phase record one. From on_response_head or on_upstream_error, a phase may
 * replace the upstream's response (or the proxy's 502/504) with one of its
 * own (sl_phase_replace): a cache answers a 304 of a revalidation with its
 * stored response, or an upstream error with a stale one.
 *
 * Everything here runs on one worker's event loop; nothing is thread-safe.
 * The proxy (src/proxy_*.c) owns runs and tables; phase files
 * (src/phase_*.c) implement struct sl_phase. Adding one: docs/architecture.md.
 */
#ifndef SL_PHASE_H
#define SL_PHASE_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct sl_access_entry;
struct sl_config;
struct sl_header;
struct sl_limiter;
struct sl_metrics_worker;
struct sl_request;
struct sl_route_conf;
struct sl_phase_chain;
struct sl_phase_table;
struct sl_phase_run;
struct sl_upstream_pool;

/* ---- writing a phase ------------------------------------------------------ */

/*
 * What a worker built for one config generation, for phases to use. Valid
 * during setup; every pointer in it lives as long as the generation, so a
 * phase's conf may keep them.
 */
struct sl_phase_env {
    const struct sl_config *cfg;
    struct event_base *base;           /* the worker's loop, for a phase's timers */
    struct sl_limiter *limiter;        /* the generation's limiter */
    struct sl_metrics_worker *metrics; /* this worker's metrics; may be NULL */
    const unsigned *route_slots;       /* metrics slot of cfg->routes[i] */
    /* the generation's pool of cfg->upstreams[i], for requests of a
     * phase's own (a cache's background refresh); NULL in tests */
    struct sl_upstream_pool *const *pools;
};

/*
 * A phase. Its functions get the run (the request's passage through the
 * chain), `conf` (what setup made for this route) and `state` (state_size
 * bytes of per-request storage, zeroed before on_request, suitably aligned
 * for any type, valid until on_end returns). Only name and on_request are
 * required; a NULL hook is skipped at no cost.
 */
struct sl_phase {
    const char *name;
    size_t state_size; /* at most SL_PHASE_STATE_MAX for a whole chain */

    /*
     * Load time, once per route of each generation, on the worker's thread.
     * Returns whether the phase applies to `route`; *conf (NULL to start
     * with) is then passed to every call for that route and to teardown.
     * Cannot fail: what could be wrong in a route's settings is refused by
     * the config check before a generation is built.
     */
    bool (*setup)(const struct sl_phase_env *env, const struct sl_route_conf *route,
                  void **conf);
    /*
     * When the generation goes. A continuation still pending for one of
     * this route's requests (it can only belong to a request that ended, see
     * sl_phase_run_end) must be called before teardown returns: the chain
     * and conf are freed right after.
     */
    void (*teardown)(void *conf);

    /*
     * The request reached this phase. The phase must, exactly once, call
     * sl_phase_pass or sl_phase_answer for it: either before on_request
     * returns (synchronously) or later from an event of its own
     * (asynchronously; sl_phase_run_start has then returned). That call is
     * the last use of run and state by the phase: the run may have moved on,
     * ended, even started the connection's next request, before it returns.
     * The request (sl_phase_request) is valid until that call, and again
     * in on_response_head, on_response_body and on_upstream_error.
     */
    void (*on_request)(struct sl_phase_run *run, void *conf, void *state);

    /*
     * The upstream's final response head, before it goes to the client
     * (never for answers given by a phase, never for 1xx). `headers` are
     * borrowed until the call returns. The phase may attach header lines.
     * Called for every phase of a run that passed its request, in order.
     */
    void (*on_response_head)(struct sl_phase_run *run, void *conf, void *state, int status,
                             const struct sl_header *headers, size_t nheaders);
    /*
     * Response content as it goes to the client, without chunk framing, in
     * pieces borrowed until the call returns. Only after on_response_head.
     */
    void (*on_response_body)(struct sl_phase_run *run, void *conf, void *state, const char *at,
                             size_t len);
    /*
     * The upstream could not be reached, timed out or broke before a
     * response head came: the client is about to get `status` (502, 503 or
     * 504) from the proxy, unless a phase calls sl_phase_replace. Called
     * for every phase of a run that passed its request, in order.
     */
    void (*on_upstream_error)(struct sl_phase_run *run, void *conf, void *state, int status);
    /*
     * The request ended: its response was sent completely (reason NULL), or
     * the connection ended first (reason says why, as in the access log).
     * Called exactly once for every phase whose on_request was called, never
     * while its continuation is pending: a phase that was waiting when the
     * request ended gets on_end right after it calls its continuation. `log`
     * is the access-log line being written, for the phase to fill its
     * fields of; NULL when the access log is off or the line is already out.
     * A phase that answered with a 4xx or 5xx names why in log->reason (a
     * static string, docs/metrics.md lists them) when `reason` is NULL.
     */
    void (*on_end)(struct sl_phase_run *run, void *conf, void *state, const char *reason,
                   struct sl_access_entry *log);

    /*
     * Request content as it goes upstream, without chunk framing (so a
     * chunked body and a Content-Length one of the same bytes look alike),
     * in pieces borrowed until the call returns. Called for every phase of
     * a run that passed its request; and, while a phase reads the body for
     * itself (sl_phase_read_body), for that phase only.
     */
    void (*on_request_body)(struct sl_phase_run *run, void *conf, void *state, const char *at,
                            size_t len);
    /*
     * The body a phase asked for with sl_phase_read_body was read whole
     * (is_complete), or will never be (too large, malformed, timed out, the
     * client left: the proxy answers or closes by itself). The phase then
     * calls its continuation: sl_phase_answer or sl_phase_respond when
     * complete, anything (it goes nowhere) otherwise; never sl_phase_pass
     * after a complete read, the body is gone.
     * Also, for every phase that passed its request, when a forwarded body
     * has gone up whole (is_complete true, no continuation to call): a
     * phase that fingerprints bodies knows it saw all of one.
     */
    void (*on_request_body_end)(struct sl_phase_run *run, void *conf, void *state,
                                bool is_complete);
};

/*
 * From on_request, before its continuation: the proxy reads the request's
 * body without forwarding it, hands it to this phase's on_request_body and
 * then calls on_request_body_end (possibly before this returns). The
 * connection stays usable for a next request, the body being consumed.
 * False (and nothing happens) when the request has no body or the run's
 * owner cannot read one (tests).
 */
bool sl_phase_read_body(struct sl_phase_run *run);

/* Lets the request go on to the next phase (the upstream after the last). */
void sl_phase_pass(struct sl_phase_run *run);
/*
 * Answers the request with `status` and an application/problem+json body
 * (RFC 9457), plus every header line attached so far. `body` is borrowed:
 * it is written before this returns.
 */
void sl_phase_answer(struct sl_phase_run *run, int status, const char *body, size_t body_len);
/*
 * A full response of a phase's own. `headers` are complete lines, borrowed
 * until the call that takes the response returns; they must not carry
 * framing (Content-Length, Transfer-Encoding) nor Connection: the proxy
 * writes those. `body` is not copied: it must stay valid until `release`
 * (if not NULL) is called with release_arg, exactly once, which may be
 * before or long after the call returns (when the client has taken it).
 */
struct sl_phase_response {
    int status;
    const char *headers;
    size_t headers_len;
    const char *body;
    size_t body_len;
    void (*release)(void *arg);
    void *release_arg;
};
/* Answers the request with `resp`, plus every header line attached so far;
 * like sl_phase_answer otherwise. */
void sl_phase_respond(struct sl_phase_run *run, const struct sl_phase_response *resp);
/*
 * From on_response_head or on_upstream_error: the client gets `resp` (and
 * the attached lines) instead of the upstream's response or the proxy's
 * error. The last call wins; each response replaced is released.
 */
void sl_phase_replace(struct sl_phase_run *run, const struct sl_phase_response *resp);
/*
 * Adds complete header lines to the request head sent upstream (a cache's
 * If-None-Match). Copied; from on_request, before its continuation.
 */
void sl_phase_attach_upstream(struct sl_phase_run *run, const char *lines, size_t len);
/*
 * Leaves the client's header fields named `name` (a static lower-case
 * string) out of the request sent upstream: a cache filling an entry drops
 * the client's If-None-Match. At most SL_PHASE_HIDE_MAX names per request;
 * past it, false and nothing is hidden. From on_request, before its
 * continuation.
 */
#define SL_PHASE_HIDE_MAX 4
bool sl_phase_hide_upstream(struct sl_phase_run *run, const char *name, size_t len);
/* Is the client's field h to be left out of the upstream request? */
bool sl_phase_is_hidden(const struct sl_phase_run *run, const struct sl_header *h);
/*
 * Adds complete header lines ("Name: value\r\n"...) to the response this
 * request gets: the upstream's, or an answer from this or a later phase
 * (not the proxy's own 502/503/504). Copied; from on_request (before its
 * continuation) or on_response_head.
 */
void sl_phase_attach(struct sl_phase_run *run, const char *lines, size_t len);
/* The request: valid from on_request until the phase's continuation. */
const struct sl_request *sl_phase_request(const struct sl_phase_run *run);
/*
 * True when the request ended while this phase was pending (the client went
 * away): the phase should skip its work and just call its continuation,
 * which then goes nowhere.
 */
bool sl_phase_is_abandoned(const struct sl_phase_run *run);

/* Every phase the proxy knows, each in a file of its own. */
extern const struct sl_phase sl_phase_lifecycle; /* src/phase_lifecycle.c */
extern const struct sl_phase sl_phase_limit;     /* src/phase_limit.c */
extern const struct sl_phase sl_phase_idem;  /* src/phase_idem.c */
extern const struct sl_phase sl_phase_cache; /* src/phase_cache.c */

struct sl_cache;
/* The route's cache store, with a reference (sl_cache_put); NULL when the
 * route has no cache. */
struct sl_cache *sl_phase_cache_store(const struct sl_route_conf *route);
/* Would req be answered from the cache now, without the upstream? For the
 * limits phase, which exempts hits from limits with cache_hits = false. */
bool sl_phase_cache_is_hit(struct sl_cache *store, const struct sl_request *req);

/* ---- running the chain (the proxy) ---------------------------------------- */

/* Per-request storage of a whole chain: phases' state_size added up. */
#define SL_PHASE_STATE_MAX 512u

enum sl_phase_result {
    SL_PHASE_PASSED,    /* every phase passed: forward the request */
    SL_PHASE_ANSWERED,  /* write the answer; status and body are given */
    SL_PHASE_ABANDONED, /* the request ended while a phase was pending */
    SL_PHASE_RESPONDED, /* write sl_phase_response(run) */
};

/*
 * Called exactly once per sl_phase_run_start, possibly before it returns
 * (when every phase decides synchronously). `body` is borrowed until the
 * callback returns; NULL unless SL_PHASE_ANSWERED. The callback may end
 * the request, reset the run and start it again (the connection's next
 * request). With SL_PHASE_ABANDONED it must only release what it holds.
 */
typedef void sl_phase_done_cb(void *arg, enum sl_phase_result result, int status,
                              const char *body, size_t body_len);

/*
 * One request's passage through its route's chain. Embedded in the
 * connection and reused by its requests, so that nothing is allocated per
 * request; the fields are private to src/phase.c. The owner must keep the
 * memory alive until done has been called (the proxy holds a connection
 * reference while the chain runs).
 */
struct sl_phase_run {
    const struct sl_phase_chain *chain; /* NULL: idle */
    const struct sl_request *req;
    sl_phase_done_cb *done;
    void *done_arg;
    unsigned next;        /* the phase deciding now, or the count that passed */
    unsigned nstarted;    /* phases whose on_request was called */
    int *sync_result;     /* while on_request runs: where a synchronous decision goes */
    bool is_pending;      /* phase `next` has not called its continuation */
    bool is_ended;        /* sl_phase_run_end came while a phase was pending */
    const char *end_reason;
    char *headers;        /* attached header lines; storage kept across requests */
    size_t headers_len, headers_cap;
    char *up_headers;     /* lines for the upstream request; storage kept too */
    size_t up_headers_len, up_headers_cap;
    struct {
        const char *name;
        size_t len;
    } hidden[SL_PHASE_HIDE_MAX]; /* sl_phase_hide_upstream's names */
    unsigned nhidden;
    struct sl_phase_response response; /* sl_phase_respond's or sl_phase_replace's */
    bool has_response;
    bool is_reading_body; /* the pending phase reads the body (sl_phase_read_body) */
    /* the owner's reader for sl_phase_read_body (sl_phase_run_set_reader) */
    bool (*reader)(void *arg);
    void *reader_arg;
    _Alignas(16) unsigned char state[SL_PHASE_STATE_MAX];
};

/*
 * The phases that apply to each route of env->cfg, in the order of the
 * built-in list (src/phase.c). Built once per generation; the chains live
 * until sl_phase_table_free, which must come after everything that can
 * still complete a pending phase is gone (the limiter).
 */
struct sl_phase_table *sl_phase_table_new(const struct sl_phase_env *env);
/* The same from a list of phases of the caller's (the seam tests use). */
struct sl_phase_table *sl_phase_table_new_with(const struct sl_phase *const *phases,
                                               size_t nphases, const struct sl_phase_env *env);
void sl_phase_table_free(struct sl_phase_table *table);
/* The chain of cfg->routes[route_index]. */
const struct sl_phase_chain *sl_phase_table_chain(const struct sl_phase_table *table,
                                                  size_t route_index);
/* Does any phase of the chain look at response bodies? (Costs a peek.) */
bool sl_phase_chain_wants_body(const struct sl_phase_chain *chain);

/* Does any phase of the chain look at request bodies? */
bool sl_phase_chain_wants_request_body(const struct sl_phase_chain *chain);

/* Per connection. fini must not be called while a phase is pending. */
void sl_phase_run_init(struct sl_phase_run *run);
/*
 * How the owner reads a body for a phase (sl_phase_read_body): `read(arg)`
 * starts reading (returns false when there is no body to read), feeding
 * sl_phase_request_body and ending with sl_phase_request_body_end. Kept
 * across requests.
 */
void sl_phase_run_set_reader(struct sl_phase_run *run, bool (*read)(void *arg), void *arg);
/* Request content (see on_request_body): to the phases that passed, or to
 * the one reading it. */
void sl_phase_request_body(struct sl_phase_run *run, const char *at, size_t len);
/* The body a phase reads is complete, or will never be. Only while one
 * reads (sl_phase_run_end also ends the read, incomplete). */
void sl_phase_request_body_end(struct sl_phase_run *run, bool is_complete);
/* A forwarded body went up whole (see on_request_body_end). */
void sl_phase_request_body_done(struct sl_phase_run *run);
/* Is a phase reading the request's body now? */
bool sl_phase_is_reading_body(const struct sl_phase_run *run);
void sl_phase_run_fini(struct sl_phase_run *run);
/*
 * Runs `chain` over `req` (borrowed until done is called). Must not be
 * called while the run's previous request has a phase pending.
 */
void sl_phase_run_start(struct sl_phase_run *run, const struct sl_phase_chain *chain,
                        const struct sl_request *req, sl_phase_done_cb *done, void *arg);
/* The header lines attached so far (for the response head or an answer). */
const char *sl_phase_headers(const struct sl_phase_run *run, size_t *len);
/* The lines for the upstream request head. */
const char *sl_phase_upstream_headers(const struct sl_phase_run *run, size_t *len);
/*
 * The response a phase answered with (SL_PHASE_RESPONDED) or replaced the
 * upstream's with (after sl_phase_response_head or sl_phase_upstream_error)
 * into *resp; false when there is none. Taking it leaves the run without
 * it: the caller writes it and calls its release.
 */
bool sl_phase_take_response(struct sl_phase_run *run, struct sl_phase_response *resp);
/* The upstream failed before a response head (see on_upstream_error). */
void sl_phase_upstream_error(struct sl_phase_run *run, int status);
/* The upstream's response head and body, for the phases' hooks. */
void sl_phase_response_head(struct sl_phase_run *run, int status,
                            const struct sl_header *headers, size_t nheaders);
void sl_phase_response_body(struct sl_phase_run *run, const char *at, size_t len);
/*
 * The request ended (see on_end). Safe on an idle run and more than once.
 * A phase still pending gets its on_end after its continuation; done is
 * then called with SL_PHASE_ABANDONED.
 */
void sl_phase_run_end(struct sl_phase_run *run, const char *reason,
                      struct sl_access_entry *log);

#endif
