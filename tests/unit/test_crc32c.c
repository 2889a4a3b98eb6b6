/*
 * test_crc32c.c -- CRC-32C against published check values (the catalogue's "123456789" and the
 * iSCSI test patterns of RFC 3720, B.4), at every alignment and split, since the hardware path
 * works eight bytes at a time and the tail byte by byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/crc32c.h"

static void test_check_values(void **state)
{
    unsigned char buf[32];

    (void)state;
    assert_int_equal(tc_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(tc_crc32c(0, "", 0), 0u);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(tc_crc32c(0, buf, sizeof(buf)), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(tc_crc32c(0, buf, sizeof(buf)), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    assert_int_equal(tc_crc32c(0, buf, sizeof(buf)), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    assert_int_equal(tc_crc32c(0, buf, sizeof(buf)), 0x113FDB5Cu);
}

/* Any split of the input, at any alignment, gives the checksum of the whole. */
static void test_splits_and_alignments(void **state)
{
    static const char text[] = "123456789";
    unsigned char mem[64];

    (void)state;
    for (size_t align = 0; align < 16; align++) {
        memcpy(mem + align, text, 9);
        assert_int_equal(tc_crc32c(0, mem + align, 9), 0xE3069283u);
        for (size_t cut = 0; cut <= 9; cut++)
            assert_int_equal(tc_crc32c(tc_crc32c(0, mem + align, cut), mem + align + cut, 9 - cut),
                             0xE3069283u);
    }
}

/* One flipped bit anywhere in a long buffer changes the value. */
static void test_detects_a_flipped_bit(void **state)
{
    static unsigned char big[4096];
    uint32_t good;

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 131u + 7u);
    good = tc_crc32c(0, big, sizeof(big));
    for (size_t i = 0; i < sizeof(big); i += 97) {
        big[i] ^= 0x10;
        assert_int_not_equal(tc_crc32c(0, big, sizeof(big)), good);
        big[i] ^= 0x10;
    }
    assert_int_equal(tc_crc32c(0, big, sizeof(big)), good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_splits_and_alignments),
        cmocka_unit_test(test_detects_a_flipped_bit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
