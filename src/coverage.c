/*
 * coverage.c - do the blocks of a tensor tile its global box exactly?
 *
 * Pure arithmetic on block offsets and shapes (no I/O), exact for any number
 * of dimensions: a sweep finds every pair of intersecting blocks, and when the
 * blocks are disjoint and their volumes add up to the box volume the tiling is
 * exact.  Otherwise a recursive split of the box at block boundaries locates
 * the uncovered regions.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------------ */

typedef struct blk {
    const uint64_t *off;
    const uint64_t *shp;
    size_t id;
    uint32_t ndim;
    uint64_t key; /* sweep coordinate */
} blk;

typedef struct coverage {
    uint32_t ndim;
    size_t max_each;
    size_t ngap, noverlap;
    sts__coverage_fn fn;
    void *ud;
    uint64_t *lo, *hi; /* scratch for a reported region */
    uint64_t budget;   /* list entries the gap search may still visit */
    int stop;          /* gap search ended early (limit or budget) */
    int aborted;       /* ... because of the budget */
} coverage;

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return sts__mul_u64(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return sts__add_u64(a, b, &r) ? UINT64_MAX : r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Offsets, then shape, then caller's number: identical blocks end up adjacent, lowest id first. */
static int cmp_geom(const void *a, const void *b)
{
    const blk *x = a, *y = b;
    for (uint32_t d = 0; d < x->ndim; d++) {
        if (x->off[d] != y->off[d])
            return x->off[d] < y->off[d] ? -1 : 1;
    }
    for (uint32_t d = 0; d < x->ndim; d++) {
        if (x->shp[d] != y->shp[d])
            return x->shp[d] < y->shp[d] ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_key(const void *a, const void *b)
{
    const blk *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int same_geom(const blk *x, const blk *y)
{
    return memcmp(x->off, y->off, x->ndim * sizeof *x->off) == 0 &&
           memcmp(x->shp, y->shp, x->ndim * sizeof *x->shp) == 0;
}

static void report(coverage *t, int code, size_t a, size_t b, const uint64_t *lo,
                   const uint64_t *hi, int more)
{
    sts__coverage_issue is = {code, a, b, lo, hi, more};
    if (t->fn)
        t->fn(t->ud, &is);
}

/* The dimension with the most distinct block offsets: sweeping it keeps the active set small. */
static uint32_t sweep_dim(const blk *b, size_t m, uint32_t ndim, uint64_t *scratch)
{
    uint32_t best = 0;
    size_t bestn = 0;
    for (uint32_t d = 0; d < ndim; d++) {
        size_t distinct = 0;
        for (size_t i = 0; i < m; i++)
            scratch[i] = b[i].off[d];
        qsort(scratch, m, sizeof *scratch, cmp_u64);
        for (size_t i = 0; i < m; i++)
            distinct += i == 0 || scratch[i] != scratch[i - 1];
        if (distinct > bestn) {
            bestn = distinct;
            best = d;
        }
    }
    return best;
}

/* Intersection of two blocks into lo/hi; 1 when it is not empty. */
static int intersect(const blk *x, const blk *y, uint64_t *lo, uint64_t *hi)
{
    for (uint32_t d = 0; d < x->ndim; d++) {
        uint64_t xe = x->off[d] + x->shp[d], ye = y->off[d] + y->shp[d];
        lo[d] = x->off[d] > y->off[d] ? x->off[d] : y->off[d];
        hi[d] = xe < ye ? xe : ye;
        if (lo[d] >= hi[d])
            return 0;
    }
    return 1;
}

/*
 * Sweep along one dimension: a block can only meet the blocks still open at
 * its start.  For a valid tiling the open blocks are disjoint in the
 * cross-section, so their number is small for real shardings.  Stops at the
 * report limit, since by then the tensor is known to be broken.
 */
static int find_overlaps(coverage *t, blk *b, size_t m, uint64_t *scratch)
{
    uint32_t d = sweep_dim(b, m, t->ndim, scratch);
    const blk **open = sts__malloc_array(m, sizeof *open);
    size_t nopen = 0;
    if (!open)
        return STS_E_NOMEM;
    for (size_t i = 0; i < m; i++)
        b[i].key = b[i].off[d];
    qsort(b, m, sizeof *b, cmp_key);
    for (size_t i = 0; i < m; i++) {
        size_t keep = 0;
        for (size_t j = 0; j < nopen; j++) {
            if (open[j]->off[d] + open[j]->shp[d] > b[i].key)
                open[keep++] = open[j];
        }
        nopen = keep;
        for (size_t j = 0; j < nopen; j++) {
            if (!intersect(open[j], &b[i], t->lo, t->hi))
                continue;
            if (t->noverlap == t->max_each) {
                t->noverlap++;
                report(t, STS_E_COVERAGE_OVERLAP, open[j]->id, b[i].id, NULL, NULL, 1);
                free(open);
                return STS_OK;
            }
            t->noverlap++;
            report(t, STS_E_COVERAGE_OVERLAP, open[j]->id < b[i].id ? open[j]->id : b[i].id,
                   open[j]->id < b[i].id ? b[i].id : open[j]->id, t->lo, t->hi, 0);
        }
        open[nopen++] = &b[i];
    }
    free(open);
    return STS_OK;
}

static int contains(const blk *x, const uint64_t *lo, const uint64_t *hi)
{
    for (uint32_t d = 0; d < x->ndim; d++) {
        if (x->off[d] > lo[d] || x->off[d] + x->shp[d] < hi[d])
            return 0;
    }
    return 1;
}

/* Picks the cut for a box no block covers: the median block boundary inside the box, in the
 * dimension that has the most such boundaries (grid lines, for grid shardings). */
static int choose_cut(const coverage *t, const uint64_t *lo, const uint64_t *hi, const blk **list,
                      size_t n, uint32_t *dim, uint64_t *cut)
{
    uint64_t *v = sts__malloc_array(2 * n, sizeof *v);
    size_t best = 0, nv = 0;
    if (!v)
        return STS_E_NOMEM;
    for (uint32_t d = 0; d < t->ndim; d++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t e = list[i]->off[d] + list[i]->shp[d];
            c += list[i]->off[d] > lo[d];
            c += e < hi[d];
        }
        if (c > best) {
            best = c;
            *dim = d;
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t o = list[i]->off[*dim], e = o + list[i]->shp[*dim];
        if (o > lo[*dim])
            v[nv++] = o;
        if (e < hi[*dim])
            v[nv++] = e;
    }
    /* A block that meets the box without covering it has a boundary inside it, so nv > 0. */
    qsort(v, nv, sizeof *v, cmp_u64);
    *cut = v[nv / 2];
    free(v);
    return STS_OK;
}

/*
 * Splits [lo, hi) at block boundaries until each piece is covered by one
 * block or by none; the empty pieces are the gaps.  list holds the blocks
 * meeting the box.
 */
static int find_gaps(coverage *t, uint64_t *lo, uint64_t *hi, const blk **list, size_t n)
{
    int rc = STS_OK;
    const blk **sub = NULL;
    uint32_t d = 0;
    uint64_t cut = 0, saved;
    size_t k;
    if (t->stop)
        return STS_OK;
    if (n == 0) {
        if (t->ngap == t->max_each) {
            /* Past the report limit the gap still counts: the verdict must not depend
             * on how many issues the caller wants listed (max_each may be 0). */
            t->ngap++;
            report(t, STS_E_COVERAGE_GAP, SIZE_MAX, SIZE_MAX, NULL, NULL, 1);
            t->stop = 1;
        } else {
            t->ngap++;
            report(t, STS_E_COVERAGE_GAP, SIZE_MAX, SIZE_MAX, lo, hi, 0);
        }
        return STS_OK;
    }
    if (n > t->budget) {
        t->stop = t->aborted = 1;
        return STS_OK;
    }
    t->budget -= n;
    for (size_t i = 0; i < n; i++) {
        if (contains(list[i], lo, hi))
            return STS_OK;
    }
    STS_CHECK(choose_cut(t, lo, hi, list, n, &d, &cut));
    sub = sts__malloc_array(n, sizeof *sub);
    STS_GOTO_IF(!sub, NULL, STS_E_NOMEM, "out of memory");
    /* Blocks already meet the box in every other dimension; only d needs a test. */
    saved = hi[d];
    hi[d] = cut;
    for (size_t i = k = 0; i < n; i++) {
        if (list[i]->off[d] < cut)
            sub[k++] = list[i];
    }
    STS_CHECK(find_gaps(t, lo, hi, sub, k));
    hi[d] = saved;
    saved = lo[d];
    lo[d] = cut;
    for (size_t i = k = 0; i < n; i++) {
        if (list[i]->off[d] + list[i]->shp[d] > cut)
            sub[k++] = list[i];
    }
    STS_CHECK(find_gaps(t, lo, hi, sub, k));
    lo[d] = saved;
done:
    free(sub);
    return rc;
}

/* Global shape, and the distinct non-empty blocks sorted by geometry. */
static int collect_blocks(uint32_t ndim, size_t n, const uint64_t *offsets, const uint64_t *shapes,
                          uint64_t *g, blk *b, size_t *mout)
{
    size_t m = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        int empty = 0;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t end;
            if (sts__add_u64(offsets[i * ndim + d], shapes[i * ndim + d], &end))
                return STS_E_VALIDATION_OVERFLOW;
            g[d] = end > g[d] ? end : g[d];
            empty |= shapes[i * ndim + d] == 0;
        }
        if (!empty)
            b[m++] = (blk){offsets + i * ndim, shapes + i * ndim, i, ndim, 0};
    }
    qsort(b, m, sizeof *b, cmp_geom);
    for (size_t i = 0; i < m; i++) {
        if (w == 0 || !same_geom(&b[w - 1], &b[i]))
            b[w++] = b[i];
    }
    *mout = w;
    return STS_OK;
}

int sts__coverage_check(uint32_t ndim, size_t n, const uint64_t *offsets, const uint64_t *shapes,
                        size_t max_each, sts__coverage_fn fn, void *ud, uint64_t *global)
{
    int rc = STS_OK;
    coverage t = {ndim, max_each, 0, 0, fn, ud, NULL, NULL, 0, 0, 0};
    blk *b = sts__malloc_array(n, sizeof *b);
    const blk **list = sts__malloc_array(n, sizeof *list);
    uint64_t *g = sts__calloc_array((size_t)ndim * 5 + 1, sizeof *g);
    uint64_t *scratch = sts__malloc_array(n, sizeof *scratch);
    uint64_t gvol = 1, sum = 0;
    size_t m = 0;
    if (!b || !list || !g || !scratch) {
        rc = STS_E_NOMEM;
        goto done;
    }
    t.lo = g + ndim;
    t.hi = g + 2 * (size_t)ndim;
    STS_CHECK(collect_blocks(ndim, n, offsets, shapes, g, b, &m));
    if (global)
        memcpy(global, g, ndim * sizeof *g);
    if (n == 0)
        goto done;
    for (uint32_t d = 0; d < ndim; d++)
        gvol = sat_mul(gvol, g[d]);
    for (size_t i = 0; i < m; i++) {
        uint64_t v = 1;
        for (uint32_t d = 0; d < ndim; d++)
            v = sat_mul(v, b[i].shp[d]);
        sum = sat_add(sum, v);
    }
    if (m > 1)
        STS_CHECK(find_overlaps(&t, b, m, scratch));
    /* Disjoint blocks inside the box whose volumes add up to the box cover it: no search. */
    if (gvol != 0 && (t.noverlap > 0 || sum != gvol || gvol == UINT64_MAX)) {
        uint64_t *lo = g + 3 * (size_t)ndim, *hi = g + 4 * (size_t)ndim;
        t.budget = 50000000ULL + 200ULL * m;
        for (size_t i = 0; i < m; i++)
            list[i] = &b[i];
        memset(lo, 0, ndim * sizeof *lo);
        memcpy(hi, g, ndim * sizeof *hi);
        STS_CHECK(find_gaps(&t, lo, hi, list, m));
        if (t.aborted && t.ngap == 0 && t.noverlap == 0 && sum < gvol) {
            t.ngap++;
            report(&t, STS_E_COVERAGE_GAP, SIZE_MAX, SIZE_MAX, NULL, NULL, 0);
        }
    }
    rc = t.noverlap ? STS_E_COVERAGE_OVERLAP : t.ngap ? STS_E_COVERAGE_GAP : STS_OK;
done:
    free(b);
    free(list);
    free(g);
    free(scratch);
    return rc;
}
