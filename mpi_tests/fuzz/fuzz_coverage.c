/*
 * fuzz_coverage.c - libFuzzer harness for sts__coverage_check, the exact
 * tiling check that decides whether a set of rank-file blocks may be
 * consolidated.
 *
 * The input describes blocks in one of three ways (first byte): small boxes
 * (coordinates 0..7), wide coordinates (any 64-bit value, including ones
 * whose offset + size overflows) or a guillotine partition of a global box
 * (an exact tiling) with one perturbation.  Whatever the blocks, the answer
 * is cross-checked against a brute-force count over the grid that every
 * block boundary cuts the box into (exact for any coordinate size):
 *  - the return code is Overlap / Gap / Ok exactly as the brute force finds;
 *  - every reported overlap lies inside both blocks named, which are not
 *    identical duplicates; every reported gap lies in the box and meets no
 *    block; the gap regions add up to the uncovered volume when all of them
 *    were listed;
 *  - at most max_each issues of each kind, then one "more" marker;
 *  - an offset + size that overflows is ValidationOverflow, with no report.
 * Violations abort, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_coverage: invariant failed: %s (line %d)\n", #c, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAXD       4
#define MAXB       64
#define MAX_ISSUES 256
#define MAX_CELLS  (1u << 14)

typedef unsigned __int128 u128;

/* Input bytes, read front to back; zeros once exhausted. */
typedef struct src {
    const uint8_t *p;
    size_t n;
} src;

static unsigned next_byte(src *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

/* Any 64-bit value: a byte shifted anywhere, optionally complemented (values near 2^64). */
static uint64_t next_wide(src *s)
{
    unsigned a = next_byte(s), b = next_byte(s);
    uint64_t v = (uint64_t)a << (b & 63);
    return (b & 0x80) ? ~v : v;
}

typedef struct blocks {
    uint32_t ndim;
    size_t n;
    uint64_t off[MAXB * MAXD], shp[MAXB * MAXD];
} blocks;

/* ------------------------------------------------------------------------ */
/* Decoding the input into blocks                                            */
/* ------------------------------------------------------------------------ */

static void decode_small(src *s, blocks *b)
{
    b->n = next_byte(s) % 25;
    for (size_t i = 0; i < b->n * b->ndim; i++) {
        unsigned v = next_byte(s);
        b->off[i] = v & 7;
        b->shp[i] = v >> 5;
    }
}

static void decode_wide(src *s, blocks *b)
{
    b->n = next_byte(s) % 17;
    for (size_t i = 0; i < b->n * b->ndim; i++) {
        b->off[i] = next_wide(s);
        b->shp[i] = next_wide(s);
    }
}

/* Splits box [lo, hi) into guillotine pieces appended to b, the input choosing the cuts. */
static void partition(src *s, blocks *b, uint64_t *lo, uint64_t *hi)
{
    uint32_t d = next_byte(s) % b->ndim;
    uint64_t cut, saved;
    if (hi[d] - lo[d] < 2 || b->n + 2 > MAXB - 2 || next_byte(s) % 4 == 0) {
        memcpy(b->off + b->n * b->ndim, lo, b->ndim * sizeof *lo);
        for (uint32_t k = 0; k < b->ndim; k++)
            b->shp[b->n * b->ndim + k] = hi[k] - lo[k];
        b->n++;
        return;
    }
    cut = lo[d] + 1 + next_wide(s) % (hi[d] - lo[d] - 1);
    saved = hi[d];
    hi[d] = cut;
    partition(s, b, lo, hi);
    hi[d] = saved;
    saved = lo[d];
    lo[d] = cut;
    partition(s, b, lo, hi);
    lo[d] = saved;
}

/* An exact tiling of a box (any size, even past 2^64 cells), then one perturbation. */
static void decode_tiling(src *s, blocks *b)
{
    uint64_t lo[MAXD] = {0}, hi[MAXD];
    size_t k;
    uint32_t d;
    for (d = 0; d < b->ndim; d++) {
        unsigned a = next_byte(s), sh = next_byte(s);
        hi[d] = (uint64_t)(1 + a % 9) << (sh % 62);
    }
    b->n = 0;
    if (b->ndim == 0) {
        b->n = 1;
    } else {
        partition(s, b, lo, hi);
    }
    k = next_byte(s) % b->n;
    d = b->ndim ? next_byte(s) % b->ndim : 0;
    switch (next_byte(s) % 6) {
    case 1: /* drop block k: a gap (unless it was empty) */
        memmove(b->off + k * b->ndim, b->off + (b->n - 1) * b->ndim, b->ndim * 8);
        memmove(b->shp + k * b->ndim, b->shp + (b->n - 1) * b->ndim, b->ndim * 8);
        b->n--;
        break;
    case 2: /* duplicate block k: still exact */
        memcpy(b->off + b->n * b->ndim, b->off + k * b->ndim, b->ndim * 8);
        memcpy(b->shp + b->n * b->ndim, b->shp + k * b->ndim, b->ndim * 8);
        b->n++;
        break;
    case 3: /* grow block k by a little or a lot */
        if (b->ndim)
            b->shp[k * b->ndim + d] += 1 + next_wide(s) % 3;
        break;
    case 4: /* shift block k back */
        if (b->ndim && b->off[k * b->ndim + d] > 0)
            b->off[k * b->ndim + d] -= 1;
        break;
    case 5: /* shrink block k */
        if (b->ndim && b->shp[k * b->ndim + d] > 0)
            b->shp[k * b->ndim + d] -= 1;
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Reference answer                                                          */
/* ------------------------------------------------------------------------ */

typedef struct truth {
    int overflow; /* some offset + size overflows */
    int brute;    /* the grid was small enough to count */
    int gap, overlap;
    int vol_exact; /* gap_vol is exact (no 128-bit overflow) */
    u128 gap_vol;
    uint64_t global[MAXD];
} truth;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int is_empty(const blocks *b, size_t i)
{
    for (uint32_t d = 0; d < b->ndim; d++) {
        if (b->shp[i * b->ndim + d] == 0)
            return 1;
    }
    return 0;
}

static int same_block(const blocks *b, size_t i, size_t j)
{
    size_t nd = b->ndim;
    return memcmp(b->off + i * nd, b->off + j * nd, nd * 8) == 0 &&
           memcmp(b->shp + i * nd, b->shp + j * nd, nd * 8) == 0;
}

/* Distinct non-empty blocks: the ones that cover cells. */
static size_t distinct(const blocks *b, size_t *ids)
{
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++) {
        int dup = is_empty(b, i);
        for (size_t j = 0; j < m && !dup; j++)
            dup = same_block(b, i, ids[j]);
        if (!dup)
            ids[m++] = i;
    }
    return m;
}

/* The sorted distinct block boundaries of dimension d, clipped to the box. */
static size_t cuts(const blocks *b, uint32_t d, uint64_t g, uint64_t *c)
{
    size_t k = 0, w = 0;
    c[k++] = 0;
    c[k++] = g;
    for (size_t i = 0; i < b->n; i++) {
        c[k++] = b->off[i * b->ndim + d];
        c[k++] = b->off[i * b->ndim + d] + b->shp[i * b->ndim + d];
    }
    qsort(c, k, sizeof *c, cmp_u64);
    for (size_t i = 0; i < k; i++) {
        if (w == 0 || c[w - 1] != c[i])
            c[w++] = c[i];
    }
    return w;
}

static void brute_force(const blocks *b, truth *t)
{
    static uint64_t c[MAXD][2 * MAXB + 2];
    size_t nc[MAXD], ids[MAXB], m = distinct(b, ids);
    uint64_t cells = 1;
    for (uint32_t d = 0; d < b->ndim; d++) {
        nc[d] = cuts(b, d, t->global[d], c[d]);
        /* The cells of the box lie between cuts at most global[d]. */
        while (nc[d] > 0 && c[d][nc[d] - 1] > t->global[d])
            nc[d]--;
        cells *= nc[d] - 1;
        if (cells > MAX_CELLS)
            return;
    }
    t->brute = 1;
    t->vol_exact = 1;
    for (uint64_t cell = 0; cell < cells; cell++) {
        uint64_t lo[MAXD], r = cell;
        u128 vol = 1;
        int cover = 0;
        for (uint32_t d = 0; d < b->ndim; d++) {
            size_t i = r % (nc[d] - 1);
            r /= nc[d] - 1;
            lo[d] = c[d][i];
            if (t->vol_exact && __builtin_mul_overflow(vol, (u128)(c[d][i + 1] - c[d][i]), &vol))
                t->vol_exact = 0;
        }
        for (size_t j = 0; j < m; j++) {
            int in = 1;
            for (uint32_t d = 0; d < b->ndim && in; d++) {
                uint64_t o = b->off[ids[j] * b->ndim + d];
                in = lo[d] >= o && lo[d] - o < b->shp[ids[j] * b->ndim + d];
            }
            cover += in;
        }
        t->overlap |= cover > 1;
        if (cover == 0) {
            t->gap = 1;
            if (t->vol_exact && __builtin_add_overflow(t->gap_vol, vol, &t->gap_vol))
                t->vol_exact = 0;
        }
    }
}

static void reference(const blocks *b, truth *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < b->n; i++) {
        for (uint32_t d = 0; d < b->ndim; d++) {
            uint64_t end;
            if (__builtin_add_overflow(b->off[i * b->ndim + d], b->shp[i * b->ndim + d], &end))
                t->overflow = 1;
            else if (end > t->global[d])
                t->global[d] = end;
        }
    }
    /* No blocks: the global box is empty by definition (it is derived from the blocks). */
    if (!t->overflow && b->n > 0)
        brute_force(b, t);
}

/* ------------------------------------------------------------------------ */
/* The issues the check reported                                             */
/* ------------------------------------------------------------------------ */

typedef struct issue {
    int code;
    size_t a, b;
    int located, more;
    uint64_t lo[MAXD], hi[MAXD];
} issue;

typedef struct issues {
    uint32_t ndim;
    size_t n;
    issue is[2 * MAX_ISSUES + 2];
} issues;

static void collect(void *ud, const sts__coverage_issue *is)
{
    issues *s = ud;
    issue *c;
    REQUIRE(s->n < sizeof s->is / sizeof s->is[0]);
    c = &s->is[s->n++];
    c->code = is->code;
    c->a = is->a;
    c->b = is->b;
    c->more = is->more;
    c->located = is->lo != NULL;
    REQUIRE((is->lo == NULL) == (is->hi == NULL));
    if (c->located) {
        memcpy(c->lo, is->lo, s->ndim * sizeof *c->lo);
        memcpy(c->hi, is->hi, s->ndim * sizeof *c->hi);
    }
}

/* [lo, hi) inside block i. */
static int inside(const blocks *b, size_t i, const uint64_t *lo, const uint64_t *hi)
{
    for (uint32_t d = 0; d < b->ndim; d++) {
        uint64_t o = b->off[i * b->ndim + d];
        if (lo[d] < o || hi[d] > o + b->shp[i * b->ndim + d])
            return 0;
    }
    return 1;
}

/* [lo, hi) meets block i. */
static int meets(const blocks *b, size_t i, const uint64_t *lo, const uint64_t *hi)
{
    for (uint32_t d = 0; d < b->ndim; d++) {
        uint64_t o = b->off[i * b->ndim + d], e = o + b->shp[i * b->ndim + d];
        if (hi[d] <= o || e <= lo[d])
            return 0;
    }
    return 1;
}

static void check_issues(const blocks *b, const truth *t, const issues *s, size_t max_each, int rc)
{
    size_t count[2] = {0, 0}, more[2] = {0, 0};
    int all_located = 1;
    u128 listed = 0;
    for (size_t k = 0; k < s->n; k++) {
        const issue *c = &s->is[k];
        int kind = c->code == STS_E_COVERAGE_OVERLAP;
        REQUIRE(c->code == STS_E_COVERAGE_GAP || c->code == STS_E_COVERAGE_OVERLAP);
        if (c->more) {
            REQUIRE(more[kind]++ == 0 && count[kind] == max_each);
            continue;
        }
        REQUIRE(more[kind] == 0 && ++count[kind] <= max_each);
        if (kind == 1) {
            REQUIRE(c->a < b->n && c->b < b->n && c->a != c->b && !same_block(b, c->a, c->b));
            REQUIRE(c->located);
            for (uint32_t d = 0; d < b->ndim; d++)
                REQUIRE(c->lo[d] < c->hi[d]);
            REQUIRE(inside(b, c->a, c->lo, c->hi) && inside(b, c->b, c->lo, c->hi));
            continue;
        }
        REQUIRE(c->a == SIZE_MAX && c->b == SIZE_MAX);
        if (!c->located) {
            all_located = 0;
            continue;
        }
        u128 vol = 1;
        for (uint32_t d = 0; d < b->ndim; d++) {
            REQUIRE(c->lo[d] < c->hi[d] && c->hi[d] <= t->global[d]);
            if (__builtin_mul_overflow(vol, (u128)(c->hi[d] - c->lo[d]), &vol))
                all_located = 0;
        }
        if (__builtin_add_overflow(listed, vol, &listed))
            all_located = 0;
        for (size_t i = 0; i < b->n; i++)
            REQUIRE(is_empty(b, i) || !meets(b, i, c->lo, c->hi));
    }
    REQUIRE((rc == STS_E_COVERAGE_OVERLAP) == (count[1] > 0));
    REQUIRE(rc != STS_E_COVERAGE_GAP || count[0] > 0);
    REQUIRE(rc != STS_OK || s->n == 0);
    /* Gap regions are disjoint pieces of the uncovered set. */
    if (t->brute && t->vol_exact && all_located && more[0] == 0 && rc != STS_E_COVERAGE_OVERLAP)
        REQUIRE(listed == t->gap_vol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static blocks b;
    static issues s;
    static const size_t limits[4] = {1, 2, 5, 1000};
    src in = {data, size};
    unsigned flags = next_byte(&in);
    size_t max_each = limits[(flags >> 4) & 3];
    uint64_t global[MAXD + 1];
    truth t;
    int rc;

    b.ndim = (flags >> 2) % (MAXD + 1);
    switch (flags & 3) {
    case 0:
        decode_small(&in, &b);
        break;
    case 1:
        decode_wide(&in, &b);
        break;
    default:
        decode_tiling(&in, &b);
        break;
    }
    if (b.ndim == 0 && (flags & 3) < 2)
        b.n = b.n ? 1 + b.n % 3 : 0; /* scalars: copies of the one element */
    reference(&b, &t);

    s.ndim = b.ndim;
    s.n = 0;
    memset(global, 0xab, sizeof global);
    rc = sts__coverage_check(b.ndim, b.n, b.off, b.shp, max_each, collect, &s, global);
    if (t.overflow) {
        REQUIRE(rc == STS_E_VALIDATION_OVERFLOW && s.n == 0);
        return 0;
    }
    REQUIRE(rc == STS_OK || rc == STS_E_COVERAGE_GAP || rc == STS_E_COVERAGE_OVERLAP);
    REQUIRE(memcmp(global, t.global, b.ndim * sizeof *global) == 0);
    if (b.n == 0)
        REQUIRE(rc == STS_OK);
    if (t.brute)
        REQUIRE(rc == (t.overlap ? STS_E_COVERAGE_OVERLAP : t.gap ? STS_E_COVERAGE_GAP : STS_OK));
    check_issues(&b, &t, &s, max_each, rc);
    return 0;
}
