/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/redis_slot: the CRC16 check value, the slot of keys as a real
 * cluster-enabled redis-server 7.0 (CLUSTER KEYSLOT) gave them, hash tags
 * by the rules of the cluster specification, binary keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "util/redis_slot.h"

static unsigned
slot_of(const char *key)
{
    return sl_redis_key_slot(key, strlen(key));
}

static void
test_crc16(void **state)
{
    (void)state;
    /* the check value of CRC-16/XMODEM, as in Redis's crc16.c */
    assert_int_equal(sl_redis_crc16("123456789", 9), 0x31c3);
    assert_int_equal(sl_redis_crc16("", 0), 0);
    assert_int_equal(sl_redis_crc16("\0", 1), 0);
}

/* Keys and their slots as `redis-cli CLUSTER KEYSLOT` answered them. */
static void
test_cluster_keyslot(void **state)
{
    static const struct {
        const char *key;
        unsigned slot;
    } cases[] = {
        { "foo", 12182 },
        { "bar", 5061 },
        { "123456789", 12739 },
        { "{user1000}.following", 3443 },
        { "{user1000}.followers", 3443 },
        { "user1000", 3443 },
        { "foo{}{bar}", 8363 },
        { "foo{{bar}}zap", 4015 },
        { "foo{bar}{zap}", 5061 },
        { "{bar", 4015 },
        { "bar", 5061 },
        { "{}", 15257 },
        { "{", 4092 },
        { "}", 12090 },
        { "}{", 12793 },
        { "a{b", 13340 },
        { "a{b}", 3300 },
        { "{a}", 15495 },
        { "}a{b}c", 3300 },
        { "", 0 },
        { "sluice:per_ip:10.0.0.1", 4857 },
        { "sluice:{tenant-42}:per_key", 11327 },
        { "{{}}", 4092 },
        { "x{}y{z}", 15453 },
        { "{{a}}", 10276 },
        { "9326{ml64_.lg2tjf8_c}z2-.-k.a", 3494 },
        { "edcmp}b3u2{m7o_s5af3-r09fquo6sbe:g", 1062 },
        { "gsyebannd4yz0e:_mrvftva0hi", 2227 },
        { "gad35l9m26mi0-yh", 1634 },
        { "0nar{tbnlz}-:gcjn2qa.vsyee", 12746 },
        { "n{_pa}", 1569 },
        { "x.3i{4:iyl_jto.pmk_9my4}", 6126 },
        { "0dggc6", 8638 },
        { "pzq0}5s7leio49-..", 5396 },
        { "rnnbe", 13228 },
        { "02pdclsx7:ifxi2v7{", 13837 },
        { "{cb4wtcb}", 16165 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned got = slot_of(cases[i].key);

        if (got != cases[i].slot)
            fail_msg("\"%s\": slot %u, want %u", cases[i].key, got, cases[i].slot);
    }
}

static void
test_hash_tags(void **state)
{
    (void)state;
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
    /* "{}" is no tag: the whole key */
    assert_int_equal(slot_of("foo{}{bar}"), sl_redis_crc16("foo{}{bar}", 10) % SL_REDIS_SLOTS);
    /* from the first '{' to the first '}' after it */
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* a '}' before the '{' does not close it; no '}' after it: no tag */
    assert_int_equal(slot_of("}a{b}c"), slot_of("b"));
    assert_int_equal(slot_of("a{b"), sl_redis_crc16("a{b", 3) % SL_REDIS_SLOTS);
    assert_int_equal(slot_of("sluice:{tenant-42}:per_key"), slot_of("tenant-42"));
}

/* Keys are bytes: NUL and high bytes count, the length decides. */
static void
test_binary(void **state)
{
    unsigned char all[256];

    (void)state;
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (unsigned char)i;
    assert_int_equal(sl_redis_key_slot("\0", 1), 0);
    assert_int_equal(sl_redis_key_slot("a\0b", 3), 8383);
    assert_int_equal(sl_redis_key_slot("\xff\xfe{\0}", 5), 0);
    assert_int_equal(sl_redis_key_slot("\x80{\xc3\xa9}x", 6), 10180);
    assert_int_equal(sl_redis_key_slot((const char *)all, sizeof(all)), 16155);
    /* only len bytes are read: the tag's '}' past the end does not count */
    assert_int_equal(sl_redis_key_slot("a{b}", 3), slot_of("a{b"));
    assert_int_equal(sl_redis_key_slot("", 0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16),
        cmocka_unit_test(test_cluster_keyslot),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_binary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
