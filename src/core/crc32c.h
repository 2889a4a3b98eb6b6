/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum lake replication verifies every copy with.
 *
 * Why CRC-32C: it catches every burst error up to 32 bits and random corruption with probability
 * 1 - 2^-32, which is what a copy check needs (this is not a defence against an attacker), and on
 * x86-64 the SSE4.2 crc32 instruction computes it at several GB/s, so checking a copy costs less
 * than the disk read it checks. Machines without SSE4.2 get a table-driven version (one table of
 * 256 entries computed at first use). Both give the standard value: crc32c("123456789") is
 * 0xE3069283.
 */
#ifndef TC_CORE_CRC32C_H
#define TC_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) with n bytes at p; returns the new value. Thread-safe. */
uint32_t tc_crc32c(uint32_t crc, const void *p, size_t n);

#endif
