/*
 * crc32c.c -- CRC-32C in hardware (SSE4.2) when the CPU has it, else by table; see crc32c.h.
 *
 * The value is the reflected CRC with polynomial 0x82F63B78, initial value and final xor
 * 0xFFFFFFFF, so tc_crc32c(tc_crc32c(0, a), b) equals the checksum of a followed by b.
 */
#include "core/crc32c.h"

#include <pthread.h>
#include <string.h>

#define TC_CRC32C_POLY 0x82F63B78u

static uint32_t tc_crc32c_table[256];
static pthread_once_t tc_crc32c_once = PTHREAD_ONCE_INIT;

static void tc_crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ TC_CRC32C_POLY : c >> 1;
        tc_crc32c_table[i] = c;
    }
}

static uint32_t tc_crc32c_sw(uint32_t c, const unsigned char *p, size_t n)
{
    pthread_once(&tc_crc32c_once, tc_crc32c_init);
    while (n--)
        c = tc_crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t tc_crc32c_hw(uint32_t c, const unsigned char *p,
                                                               size_t n)
{
    uint64_t c64 = c;

    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t tc_crc32c(uint32_t crc, const void *p, size_t n)
{
    uint32_t c = ~crc;

#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~tc_crc32c_hw(c, p, n);
#endif
    return ~tc_crc32c_sw(c, p, n);
}
