/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/path: request paths normalised as routes and limits see them
 * (issue 12, point 4): RFC 3986 section 5.2.4 dot segments, percent-decoding
 * of unreserved characters only, merged slashes, encoded slashes kept or
 * refused, bad escapes refused; the result is stable under a second pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/path.h"

/* The normal form of `in` with `flags`, in a buffer of exactly strlen(in)
 * bytes (so that ASan sees a write past what the contract allows). */
static enum sl_path_result
norm(const char *in, unsigned flags, char *res, size_t res_size)
{
    size_t len = strlen(in), out_len = 0;
    char *out = malloc(len ? len : 1);
    enum sl_path_result r = sl_path_normalize(in, len, out, &out_len, flags);

    if (r == SL_PATH_OK) {
        assert_true(out_len >= 1 && out_len <= len && out_len < res_size);
        memcpy(res, out, out_len);
        res[out_len] = '\0';
    }
    free(out);
    return r;
}

static void
expect(const char *in, const char *want)
{
    char got[512], again[512];

    if (norm(in, 0, got, sizeof(got)) != SL_PATH_OK)
        fail_msg("\"%s\": refused, want \"%s\"", in, want);
    if (strcmp(got, want) != 0)
        fail_msg("\"%s\": got \"%s\", want \"%s\"", in, got, want);
    /* a normal form is its own normal form */
    assert_int_equal(norm(got, 0, again, sizeof(again)), SL_PATH_OK);
    if (strcmp(again, got) != 0)
        fail_msg("\"%s\": not stable: \"%s\" then \"%s\"", in, got, again);
}

static void
test_unchanged(void **state)
{
    (void)state;
    expect("/", "/");
    expect("/v1/", "/v1/");
    expect("/v1/items", "/v1/items");
    expect("/a/b/c.txt", "/a/b/c.txt");
    expect("/a-b_c~d.e", "/a-b_c~d.e");
    expect("/...", "/...");
    expect("/a/.../b", "/a/.../b");
    expect("/a/..b/.c/c.", "/a/..b/.c/c.");
    expect("/caf\xc3\xa9", "/caf\xc3\xa9");
    expect("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;=");
}

/* RFC 3986 section 5.2.4 and its examples, from the path's point of view */
static void
test_dot_segments(void **state)
{
    (void)state;
    expect("/a/b/c/./../../g", "/a/g");
    expect("/./v1/a", "/v1/a");
    expect("/x/../v1/a", "/v1/a");
    expect("/v1/./a", "/v1/a");
    expect("/a/b/..", "/a/");
    expect("/a/b/.", "/a/b/");
    expect("/a/..", "/");
    expect("/a/.", "/a/");
    expect("/.", "/");
    expect("/..", "/");
    expect("/./", "/");
    expect("/../", "/");
    expect("/a/../", "/");
    expect("/a/./", "/a/");
    expect("/a/b/../../c", "/c");
    expect("/a/b/../../../c", "/c");
    expect("/../x", "/x");
    expect("/../../../etc/passwd", "/etc/passwd");
    expect("/a/./b/./c/.", "/a/b/c/");
    expect("/a/b/c/../../..", "/");
    expect("/a/b/c/../../../", "/");
}

static void
test_merged_slashes(void **state)
{
    (void)state;
    expect("//", "/");
    expect("//v1/a", "/v1/a");
    expect("/v1//a", "/v1/a");
    expect("/v1///a//", "/v1/a/");
    expect("///", "/");
    /* merged before the dots go, as nginx does: no empty segment for ".." to eat */
    expect("/a//../b", "/b");
    expect("/a/..//b", "/b");
    expect("//..//v1//.//a", "/v1/a");
}

static void
test_percent(void **state)
{
    (void)state;
    expect("/%76%31/a", "/v1/a");
    expect("/%41%5a%61%7A%30%39", "/AZaz09");
    expect("/%2d%2E%5f%7e", "/-._~");
    expect("/%2E/v1/a", "/v1/a");
    expect("/%2e%2E/v1/a", "/v1/a");
    expect("/x/%2e%2e/v1/a", "/v1/a");
    expect("/.%2e/v1", "/v1");
    /* reserved and other bytes stay encoded, in upper-case hex */
    expect("/a%20b", "/a%20b");
    expect("/a%3fb", "/a%3Fb");
    expect("/a%25b", "/a%25b");
    expect("/%2541", "/%2541"); /* no double decoding */
    expect("/a%00b", "/a%00b");
    expect("/%c3%a9", "/%C3%A9");
    expect("/a%2fb", "/a%2Fb");
    expect("/a%2Fb", "/a%2Fb");
    expect("/a%2F..%2Fb", "/a%2F..%2Fb"); /* one segment: its dots are not a segment */
    expect("/a/%2F/../b", "/a/b");
    expect("/%2F%2F", "/%2F%2F"); /* encoded slashes are not merged */
}

static void
test_refused(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(norm("/%zz", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/%", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/a%4", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/a%4g", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/a%g4", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/%%41", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/ok/%", 0, out, sizeof(out)), SL_PATH_BAD_ESCAPE);
    assert_int_equal(norm("/a%2fb", SL_PATH_REJECT_ENCODED_SLASH, out, sizeof(out)),
                     SL_PATH_ENCODED_SLASH);
    assert_int_equal(norm("/a%2Fb", SL_PATH_REJECT_ENCODED_SLASH, out, sizeof(out)),
                     SL_PATH_ENCODED_SLASH);
    assert_int_equal(norm("/a%252Fb", SL_PATH_REJECT_ENCODED_SLASH, out, sizeof(out)),
                     SL_PATH_OK);
    assert_string_equal(out, "/a%252Fb");
    assert_int_equal(norm("/a/b", SL_PATH_REJECT_ENCODED_SLASH, out, sizeof(out)), SL_PATH_OK);
    assert_int_equal(norm("", 0, out, sizeof(out)), SL_PATH_NOT_ABSOLUTE);
    assert_int_equal(norm("a/b", 0, out, sizeof(out)), SL_PATH_NOT_ABSOLUTE);
    assert_int_equal(norm("%2F", 0, out, sizeof(out)), SL_PATH_NOT_ABSOLUTE);
}

/* Every short path over a small alphabet: the result is absolute, no longer
 * than the input, free of "//", "." and ".." segments and of escapes of
 * unreserved bytes, and stable under a second pass. */
static void
check_properties(const char *in)
{
    char got[64], again[64];

    if (norm(in, 0, got, sizeof(got)) != SL_PATH_OK)
        return;
    assert_true(got[0] == '/');
    if (strstr(got, "//") != NULL || strstr(got, "/./") != NULL
        || strstr(got, "/../") != NULL)
        fail_msg("\"%s\" gave \"%s\"", in, got);
    size_t n = strlen(got);
    if ((n >= 2 && strcmp(got + n - 2, "/.") == 0) || (n >= 3 && strcmp(got + n - 3, "/..") == 0))
        fail_msg("\"%s\" gave \"%s\"", in, got);
    if (strstr(got, "%2E") != NULL || strstr(got, "%2e") != NULL || strstr(got, "%41") != NULL)
        fail_msg("\"%s\" gave \"%s\"", in, got);
    assert_int_equal(norm(got, 0, again, sizeof(again)), SL_PATH_OK);
    if (strcmp(again, got) != 0)
        fail_msg("\"%s\": \"%s\" then \"%s\"", in, got, again);
}

static void
test_exhaustive_short(void **state)
{
    static const char *const atoms[] = { "/", ".", "a", "%2E", "%2F", "%41", "%" };
    const size_t natoms = sizeof(atoms) / sizeof(atoms[0]);
    char in[64];

    (void)state;
    for (size_t len = 1; len <= 6; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= natoms;
        for (size_t k = 0; k < total; k++) {
            size_t v = k, n = 1;
            in[0] = '/';
            for (size_t i = 0; i < len; i++, v /= natoms) {
                size_t alen = strlen(atoms[v % natoms]);
                memcpy(in + n, atoms[v % natoms], alen);
                n += alen;
            }
            in[n] = '\0';
            check_properties(in);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unchanged),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_merged_slashes),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_exhaustive_short),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
