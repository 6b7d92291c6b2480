/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/sha256: the examples of FIPS 180-4 (NIST's SHA-256 example
 * computations: one block, two blocks, a million 'a') plus the empty
 * message, and the same digests fed in pieces split at every offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/sha256.h"

static const char *const two_blocks =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
    "lmnopqrsmnopqrstnopqrstu";

static void
hex(const uint8_t digest[SL_SHA256_LEN], char out[2 * SL_SHA256_LEN + 1])
{
    for (int i = 0; i < SL_SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static void
assert_digest(const void *data, size_t len, const char *want)
{
    uint8_t digest[SL_SHA256_LEN];
    char got[2 * SL_SHA256_LEN + 1];

    sl_sha256(data, len, digest);
    hex(digest, got);
    assert_string_equal(got, want);
}

static void
test_vectors(void **state)
{
    (void)state;
    assert_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_digest(two_blocks, strlen(two_blocks),
                  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void
test_million_a(void **state)
{
    char chunk[1000];
    struct sl_sha256 s;
    uint8_t digest[SL_SHA256_LEN];
    char got[2 * SL_SHA256_LEN + 1];

    (void)state;
    memset(chunk, 'a', sizeof(chunk));
    sl_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        sl_sha256_update(&s, chunk, sizeof(chunk));
    sl_sha256_final(&s, digest);
    hex(digest, got);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Fed in two pieces, split anywhere: the block boundary must not matter. */
static void
test_split_anywhere(void **state)
{
    size_t len = strlen(two_blocks);
    uint8_t want[SL_SHA256_LEN], got[SL_SHA256_LEN];

    (void)state;
    sl_sha256(two_blocks, len, want);
    for (size_t cut = 0; cut <= len; cut++) {
        struct sl_sha256 s;

        sl_sha256_init(&s);
        sl_sha256_update(&s, two_blocks, cut);
        sl_sha256_update(&s, two_blocks + cut, len - cut);
        sl_sha256_final(&s, got);
        assert_memory_equal(got, want, SL_SHA256_LEN);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_split_anywhere),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
