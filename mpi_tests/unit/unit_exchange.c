/*
 * unit_exchange.c - the arithmetic of the record exchange (src/exchange.c)
 * that a real run could only reach with tens of GiB of records: the transfer
 * unit that keeps MPI's int counts and displacements in range, and the
 * compaction of padded parts.  Serial, no MPI calls.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "test_util.h"

#define GIB ((uint64_t)1 << 30)

/* The unit for lens, checked against its definition: fits, and half of it would not. */
static uint64_t unit_for(const uint64_t *len, int np, uint64_t limit)
{
    uint64_t unit = 0, units = 0, t = 0, half = 0;
    CHECK_OK(sts__exchange_unit(len, np, limit, &unit, &units));
    for (int r = 0; r < np; r++) {
        t += (len[r] + unit - 1) / unit;
        CHECK((len[r] + unit - 1) / unit <= INT_MAX); /* each count is an int */
    }
    CHECK(t == units && units <= limit);
    CHECK(unit >= 8 && (unit & (unit - 1)) == 0 && unit <= INT_MAX);
    if (unit > 8) {
        for (int r = 0; r < np; r++)
            half += (len[r] + unit / 2 - 1) / (unit / 2);
        CHECK(half > limit);
    }
    return unit;
}

int main(void)
{
    /* Small parts: 8-byte units, one unit per started 8 bytes. */
    {
        uint64_t len[4] = {0, 1, 8, 9}, unit = 0, units = 0;
        CHECK_OK(sts__exchange_unit(len, 4, INT_MAX, &unit, &units));
        CHECK(unit == 8 && units == 0 + 1 + 1 + 2);
    }
    /* Past 2 GiB in bytes but below INT_MAX 8-byte units: still 8 (the old reader gave up
     * here with STS_E_UNSUPPORTED). */
    {
        uint64_t len[3] = {3 * GIB, 0, 2 * GIB + 1};
        CHECK(unit_for(len, 3, INT_MAX) == 8);
    }
    /* 20 GiB in one part: 8-byte units would need more than INT_MAX counts. */
    {
        uint64_t len[2] = {20 * GIB, 1};
        CHECK(unit_for(len, 2, INT_MAX) == 16);
    }
    /* Many ranks with odd sizes near the boundary. */
    {
        uint64_t len[64];
        for (int r = 0; r < 64; r++)
            len[r] = 5 * GIB + (uint64_t)r * 12345 + 7;
        CHECK(unit_for(len, 64, INT_MAX) == 256);
    }
    /* Every part rounds up: 1000 one-byte parts need 1000 units whatever the unit. */
    {
        uint64_t len[1000], unit = 0, units = 0;
        for (int r = 0; r < 1000; r++)
            len[r] = 1;
        CHECK_RC(sts__exchange_unit(len, 1000, 999, &unit, &units), STS_E_UNSUPPORTED);
        CHECK_OK(sts__exchange_unit(len, 1000, 1000, &unit, &units));
        CHECK(unit == 8 && units == 1000);
    }
    /* A small limit drives the same doubling as INT_MAX does for huge parts. */
    {
        uint64_t len[3] = {1000, 24, 0};
        CHECK(unit_for(len, 3, 10) == 128);
    }
    /* No unit below INT_MAX bytes can describe 2^62 bytes in INT_MAX units. */
    {
        uint64_t len[1] = {(uint64_t)1 << 62}, unit = 0, units = 0;
        CHECK_RC(sts__exchange_unit(len, 1, INT_MAX, &unit, &units), STS_E_UNSUPPORTED);
    }
    /* Compaction moves padded parts back to back. */
    {
        unsigned char buf[64];
        uint64_t start[3] = {0, 16, 48}, len[3] = {3, 10, 5};
        memset(buf, 0xee, sizeof buf);
        memcpy(buf, "abc", 3);
        memcpy(buf + 16, "0123456789", 10);
        memcpy(buf + 48, "VWXYZ", 5);
        CHECK(sts__exchange_compact(buf, start, len, 3) == 18);
        CHECK(memcmp(buf, "abc0123456789VWXYZ", 18) == 0);
        CHECK(start[0] == 0 && start[1] == 3 && start[2] == 13);
    }
    printf("unit_exchange: %s\n", test_failures ? "FAILED" : "ok");
    return TEST_EXIT();
}
