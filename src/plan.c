/*
 * plan.c - the consolidation planner: grouping, dtype and coverage checks,
 * output files and offsets (see plan.h).  Pure: no MPI, no I/O.
 *
 * It must scale to thousands of rank files times thousands of tensors, so
 * names are grouped with a hash table, blocks with a counting sort, and the
 * coverage check sorts and sweeps instead of comparing every pair.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

/* ---- small helpers ------------------------------------------------------ */

static const char *fname(const builder *B, uint32_t file, char *buf, size_t len)
{
    if (B->o->file_names)
        return B->o->file_names[file];
    snprintf(buf, len, "input file #%u", file);
    return buf;
}

int sts__plan_name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Writes "[a, b, c]" of n values into buf (truncated with "..." when long). */
static const char *fmt_dims(const uint64_t *v, uint32_t n, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (uint32_t i = 0; i < n && k + 24 < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
    if (k + 5 < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}

uint64_t sts__plan_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/*
 * Stable bottom-up merge sort of indices with a context comparator (C11
 * qsort has no context argument, and qsort_r differs between libcs).
 */
void sts__plan_sort_idx(size_t *a, size_t n, size_t *tmp, sts__plan_cmp cmp, const void *ctx)
{
    size_t *src = a, *dst = tmp, run = 1;
    /* Blocks usually arrive in order already (files follow the offsets): O(n) then. */
    while (run < n && cmp(a[run - 1], a[run], ctx) <= 0)
        run++;
    if (run >= n)
        return;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = cmp(src[j], src[i], ctx) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        size_t *s = src;
        src = dst;
        dst = s;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

/* ---- grouping by name ---------------------------------------------------- */

static const char *tensor_key(const void *ctx, size_t id, size_t *len)
{
    const builder *B = ctx;
    *len = B->t[id].name_len;
    return B->t[id].name;
}

int sts__plan_table_add(builder *B, size_t id)
{
    int rc;
    /* Builders start zeroed; the table learns its keys at the first insert. */
    if (!B->names.key)
        sts__hashtab_init(&B->names, tensor_key, B);
    rc = sts__hashtab_insert(&B->names, id, sts__hashtab_hash(B->t[id].name, B->t[id].name_len),
                             NULL);
    /* A name already present keeps its first id, as lookups always returned. */
    return rc == 1 ? STS_OK : rc;
}

long sts__plan_lookup(const builder *B, const char *name, size_t len)
{
    return sts__hashtab_find(&B->names, name, len);
}

static int add_tensor(builder *B, size_t blk, uint32_t *id)
{
    const sts_plan_block *b = &B->b[blk];
    tacc *T;
    T = sts__grow(B->t, &B->capt, B->nt + 1, sizeof *T, 256);
    if (!T)
        return STS_E_NOMEM;
    B->t = T;
    T = &B->t[B->nt];
    memset(T, 0, sizeof *T);
    T->first_seen = blk;
    T->name = b->name;
    T->name_len = b->name_len;
    T->dtype = b->dtype;
    T->ndim = b->ndim;
    T->key = B->keys ? B->keys[blk] : blk;
    *id = (uint32_t)B->nt++;
    return sts__plan_table_add(B, *id);
}

static int check_block(const builder *B, size_t i)
{
    const sts_plan_block *b = &B->b[i];
    char fb[40];
    uint64_t end;
    if ((unsigned)b->dtype >= STS_DTYPE_COUNT || !b->name || b->name[b->name_len] != '\0')
        return sts__fail(B->diag, STS_E_ARG, "block %zu of %s: invalid dtype or name", i,
                         fname(B, b->file, fb, sizeof fb));
    if (b->ndim > STS_PLAN_MAX_NDIM)
        return sts__fail(B->diag, STS_E_UNSUPPORTED,
                         "tensor '%s' in %s: %u dimensions (at most %d)", b->name,
                         fname(B, b->file, fb, sizeof fb), b->ndim, STS_PLAN_MAX_NDIM);
    for (uint32_t k = 0; k < b->ndim; k++)
        if (sts__add_u64(b->offsets[k], b->shape[k], &end))
            return sts__fail(B->diag, STS_E_VALIDATION_OVERFLOW,
                             "tensor '%s' in %s: offset + size overflows in dimension %u", b->name,
                             fname(B, b->file, fb, sizeof fb), k);
    return STS_OK;
}

/* Gives every block its tensor id (ids in order of first appearance) and groups order[]. */
static int group_blocks(builder *B, size_t *bad)
{
    int rc = STS_OK;
    size_t *start = NULL;
    *bad = SIZE_MAX;
    for (size_t i = 0; i < B->nb; i++) {
        const sts_plan_block *b = &B->b[i];
        long id;
        *bad = i;
        STS_CHECK(check_block(B, i));
        *bad = SIZE_MAX;
        id = sts__plan_lookup(B, b->name, b->name_len);
        if (id < 0) {
            uint32_t nid;
            STS_CHECK(add_tensor(B, i, &nid));
            id = nid;
        }
        B->tid[i] = (uint32_t)id;
        B->t[id].n++;
    }
    /* Counting sort: blocks of one tensor become a contiguous range of order[]. */
    start = sts__calloc_array(B->nt + 1, sizeof *start);
    STS_GOTO_IF(!start, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B->nt; t++) {
        B->t[t].first = start[t];
        start[t + 1] = start[t] + B->t[t].n;
    }
    for (size_t i = 0; i < B->nb; i++)
        B->order[start[B->tid[i]]++] = i;
done:
    free(start);
    if (rc == STS_E_NOMEM)
        sts__fail(B->diag, rc, "out of memory while grouping %zu blocks", B->nb);
    return rc;
}

/* ---- per-tensor checks --------------------------------------------------- */

/* Orders blocks by offsets, then shape, then file: duplicates become neighbours. */
static int cmp_box(size_t a, size_t b, const void *ctx)
{
    const sts_plan_block *B = ctx, *x = &B[a], *y = &B[b];
    for (uint32_t k = 0; k < x->ndim; k++)
        if (x->offsets[k] != y->offsets[k])
            return x->offsets[k] < y->offsets[k] ? -1 : 1;
    for (uint32_t k = 0; k < x->ndim; k++)
        if (x->shape[k] != y->shape[k])
            return x->shape[k] < y->shape[k] ? -1 : 1;
    return x->file < y->file ? -1 : x->file > y->file;
}

static int same_box(const sts_plan_block *x, const sts_plan_block *y)
{
    for (uint32_t k = 0; k < x->ndim; k++)
        if (x->offsets[k] != y->offsets[k] || x->shape[k] != y->shape[k])
            return 0;
    return 1;
}

static int is_empty(const sts_plan_block *x)
{
    for (uint32_t k = 0; k < x->ndim; k++)
        if (x->shape[k] == 0)
            return 1;
    return 0;
}

static int fail_pair(const builder *B, int code, const char *what, size_t i, size_t j)
{
    const sts_plan_block *x = &B->b[i], *y = &B->b[j];
    char f1[40], f2[40], o1[160], o2[160], s1[160], s2[160];
    return sts__fail(B->diag, code,
                     "tensor '%s': block at %s shape %s in %s %s block at %s shape %s in %s",
                     x->name, fmt_dims(x->offsets, x->ndim, o1, sizeof o1),
                     fmt_dims(x->shape, x->ndim, s1, sizeof s1), fname(B, x->file, f1, sizeof f1),
                     what, fmt_dims(y->offsets, y->ndim, o2, sizeof o2),
                     fmt_dims(y->shape, y->ndim, s2, sizeof s2), fname(B, y->file, f2, sizeof f2));
}

/* Dtype and rank agreement, global shape and byte size. */
static int tensor_shape(builder *B, tacc *T, uint64_t *shape)
{
    const sts_plan_block *f = &B->b[T->first_seen];
    uint64_t numel = 1;
    char f1[40], f2[40];
    int rc;
    for (uint32_t k = 0; k < f->ndim; k++)
        shape[k] = 0;
    for (size_t i = T->first; i < T->first + T->n; i++) {
        const sts_plan_block *x = &B->b[B->order[i]];
        if (x->dtype != f->dtype)
            return sts__fail(B->diag, STS_E_DTYPE_MISMATCH,
                             "tensor '%s': dtype %s in %s but %s in %s", f->name,
                             sts_dtype_name(f->dtype), fname(B, f->file, f1, sizeof f1),
                             sts_dtype_name(x->dtype), fname(B, x->file, f2, sizeof f2));
        if (x->ndim != f->ndim)
            return sts__fail(B->diag, STS_E_SHARDING_INFO,
                             "tensor '%s': %u dimensions in %s but %u in %s", f->name, f->ndim,
                             fname(B, f->file, f1, sizeof f1), x->ndim,
                             fname(B, x->file, f2, sizeof f2));
        for (uint32_t k = 0; k < x->ndim; k++)
            if (x->offsets[k] + x->shape[k] > shape[k])
                shape[k] = x->offsets[k] + x->shape[k];
    }
    T->shape = shape;
    if (sts__numel(shape, f->ndim, &numel) != STS_OK)
        return sts__fail(B->diag, STS_E_VALIDATION_OVERFLOW,
                         "tensor '%s': element count of the global shape overflows", f->name);
    rc = sts_dtype_nbytes(f->dtype, numel, &T->nbytes);
    if (rc != STS_OK)
        return sts__fail(B->diag, rc, "tensor '%s': %s", f->name, sts_strerror(rc));
    return STS_OK;
}

/*
 * A direct save's blocks also declare their tensor's global shape.  The
 * declarations must agree (STS_E_ARG, as for replicas that disagree), and
 * the blocks must span the declared shape: a shorter span means they leave
 * its end uncovered (STS_E_COVERAGE_GAP), which coverage alone cannot see.
 */
static int check_declared(const builder *B, const tacc *T)
{
    const sts_plan_block *d = NULL;
    size_t len = 8 * (size_t)T->ndim;
    char f1[40], f2[40], s1[160], s2[160];
    for (size_t i = T->first; i < T->first + T->n; i++) {
        const sts_plan_block *x = &B->b[B->order[i]];
        if (!x->declared || (d && memcmp(x->declared, d->declared, len) == 0))
            continue;
        if (!d) {
            d = x;
            continue;
        }
        return sts__fail(
            B->diag, STS_E_ARG, "tensor '%s': %s gives the global shape %s, %s gives %s", d->name,
            fname(B, d->file, f1, sizeof f1), fmt_dims(d->declared, T->ndim, s1, sizeof s1),
            fname(B, x->file, f2, sizeof f2), fmt_dims(x->declared, T->ndim, s2, sizeof s2));
    }
    if (d && memcmp(T->shape, d->declared, len) != 0)
        return sts__fail(B->diag, STS_E_COVERAGE_GAP,
                         "tensor '%s' (global shape %s): the blocks cover only %s", d->name,
                         fmt_dims(d->declared, T->ndim, s1, sizeof s1),
                         fmt_dims(T->shape, T->ndim, s2, sizeof s2));
    return STS_OK;
}

/* Sub-byte dtypes: every block must start and end on a byte in the last dimension. */
static int check_subbyte(const builder *B, const tacc *T)
{
    const sts_plan_block *f = &B->b[T->first_seen];
    unsigned bits = sts_dtype_bits(f->dtype);
    char fb[40];
    if (bits % 8 == 0 || f->ndim == 0)
        return STS_OK;
    for (size_t i = T->first; i < T->first + T->n; i++) {
        const sts_plan_block *x = &B->b[B->order[i]];
        uint32_t l = x->ndim - 1;
        if ((x->offsets[l] * bits) % 8 || (x->shape[l] * bits) % 8 || (T->shape[l] * bits) % 8)
            return sts__fail(B->diag, STS_E_UNSUPPORTED,
                             "tensor '%s' (%s): the block in %s does not start and end on a byte "
                             "boundary in the last dimension",
                             f->name, sts_dtype_name(f->dtype), fname(B, x->file, fb, sizeof fb));
    }
    return STS_OK;
}

/* Sorts the blocks, drops identical duplicates and empty blocks (compacting order[]). */
static void dedupe(builder *B, tacc *T)
{
    size_t *v = B->order + T->first, n = 0;
    sts__plan_sort_idx(v, T->n, B->scratch, cmp_box, B->b);
    for (size_t i = 0; i < T->n; i++) {
        const sts_plan_block *x = &B->b[v[i]];
        if (is_empty(x) || (n > 0 && same_box(&B->b[v[n - 1]], x)))
            continue;
        v[n++] = v[i];
    }
    T->n = n;
}

/* The first problem the coverage check reports, in the tensor's block numbering. */
typedef struct cov_first {
    uint32_t ndim;
    int seen;
    size_t a, b;
    char region[160];
} cov_first;

static void on_coverage_issue(void *ud, const sts__coverage_issue *is)
{
    cov_first *c = ud;
    size_t used = 0;
    if (c->seen || is->more)
        return;
    c->seen = 1;
    c->a = is->a;
    c->b = is->b;
    c->region[0] = '\0';
    if (!is->lo)
        return;
    for (uint32_t k = 0; k < c->ndim && used + 1 < sizeof c->region; k++) {
        int w = snprintf(c->region + used, sizeof c->region - used, "%s%llu:%llu", k ? ", " : "[",
                         (unsigned long long)is->lo[k], (unsigned long long)is->hi[k]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used + 2 <= sizeof c->region)
        memcpy(c->region + used, "]", 2);
}

/*
 * Exact tiling of the tensor's global box, by the same check verify and the
 * reader use (coverage.c).  It runs on every block, before dedupe(), because
 * empty blocks still widen the global shape and duplicates count once there.
 */
static int check_coverage(builder *B, tacc *T)
{
    const sts_plan_block *f = &B->b[T->first_seen];
    uint32_t nd = f->ndim;
    cov_first c = {nd, 0, 0, 0, ""};
    uint64_t *off = sts__malloc_array(T->n, (size_t)nd * 2 * sizeof *off);
    char s[160];
    int rc;
    if (!off)
        return sts__fail(B->diag, STS_E_NOMEM, "tensor '%s': out of memory", f->name);
    for (size_t i = 0; i < T->n; i++) {
        const sts_plan_block *x = &B->b[B->order[T->first + i]];
        memcpy(off + i * nd, x->offsets, nd * sizeof *off);
        memcpy(off + (T->n + i) * nd, x->shape, nd * sizeof *off);
    }
    rc = sts__coverage_check(nd, T->n, off, off + T->n * nd, 1, on_coverage_issue, &c, NULL);
    if (rc == STS_E_COVERAGE_OVERLAP && c.seen && c.b != SIZE_MAX)
        rc = fail_pair(B, rc, "overlaps the", B->order[T->first + c.a], B->order[T->first + c.b]);
    else if (rc == STS_E_COVERAGE_GAP)
        rc = sts__fail(B->diag, rc, "tensor '%s' (global shape %s): no block covers %s", f->name,
                       fmt_dims(T->shape, nd, s, sizeof s),
                       c.region[0] ? c.region : "some of its elements");
    else if (rc != STS_OK)
        rc = sts__fail(B->diag, rc, "tensor '%s': coverage check: %s", f->name, sts_strerror(rc));
    free(off);
    return rc;
}

/* Runs every per-tensor check; on an error, *bad is the failing tensor. */
static int check_tensors(builder *B, uint64_t *pool, size_t *bad)
{
    int rc = STS_OK;
    for (size_t t = 0; t < B->nt; t++) {
        tacc *T = &B->t[t];
        *bad = t;
        STS_CHECK(tensor_shape(B, T, pool));
        pool += T->ndim;
        STS_CHECK(check_declared(B, T));
        STS_CHECK(check_subbyte(B, T));
        STS_CHECK(check_coverage(B, T));
        dedupe(B, T);
        if (memchr(T->name, '\0', T->name_len))
            STS_GOTO_IF(1, B->diag, STS_E_UNSUPPORTED,
                        "a tensor name contains U+0000 (input %u): it cannot be written",
                        B->b[T->first_seen].file);
    }
done:
    return rc;
}

/* ---- entry points -------------------------------------------------------- */

static int alloc_work(builder *B)
{
    size_t most = 0;
    for (size_t t = 0; t < B->nt; t++)
        if (B->t[t].n > most)
            most = B->t[t].n;
    B->scratch = sts__malloc_array(most, sizeof *B->scratch);
    if (!B->scratch)
        return sts__fail(B->diag, STS_E_NOMEM, "out of memory");
    return STS_OK;
}

/* Grouping and checks; on an error g->fail_key orders it among all ranks' errors. */
static int group_and_check(builder *B, sts_plan_groups *g)
{
    int rc = STS_OK;
    size_t dims = 0, bad = 0;
    B->tid = sts__malloc_array(B->nb, sizeof *B->tid);
    B->order = sts__malloc_array(B->nb, sizeof *B->order);
    STS_GOTO_IF(!B->tid || !B->order, B->diag, STS_E_NOMEM, "out of memory");
    rc = group_blocks(B, &bad);
    if (rc != STS_OK) {
        g->fail_key = bad == SIZE_MAX ? 0 : B->keys ? B->keys[bad] : bad;
        goto done;
    }
    for (size_t t = 0; t < B->nt; t++)
        dims += B->t[t].ndim;
    STS_CHECK(alloc_work(B));
    g->shape_pool = sts__malloc_array(dims, sizeof *g->shape_pool);
    STS_GOTO_IF(!g->shape_pool, B->diag, STS_E_NOMEM, "out of memory");
    rc = check_tensors(B, g->shape_pool, &bad);
    if (rc != STS_OK)
        g->fail_key = STS_PLAN_KEY_TENSOR | B->t[bad].key;
done:
    return rc;
}
static void builder_free(builder *B)
{
    free(B->tid);
    sts__hashtab_free(&B->names);
    free(B->t);
    free(B->order);
    free(B->scratch);
}

int sts__plan_group(const sts_plan_block *blocks, size_t nblocks, const uint64_t *keys,
                    const sts_plan_opts *opts, sts_plan_groups *g, sts_diag *diag)
{
    int rc = STS_OK;
    builder B;
    memset(&B, 0, sizeof B);
    memset(g, 0, sizeof *g);
    B.b = blocks;
    B.nb = nblocks;
    B.keys = keys;
    B.o = opts;
    B.diag = diag;
    STS_CHECK(group_and_check(&B, g));
    g->tensors = sts__calloc_array(B.nt ? B.nt : 1, sizeof *g->tensors);
    STS_GOTO_IF(!g->tensors, diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B.nt; t++) {
        sts_plan_summary *S = &g->tensors[t];
        const tacc *T = &B.t[t];
        S->name = T->name;
        S->name_len = T->name_len;
        S->dtype = T->dtype;
        S->ndim = T->ndim;
        S->shape = T->shape;
        S->nbytes = T->nbytes;
        S->key = T->key;
        S->first_block = T->first;
        S->nblocks = T->n;
    }
    g->ntensors = B.nt;
    g->order = B.order;
    B.order = NULL;
done:
    if (rc != STS_OK) {
        uint64_t key = g->fail_key;
        sts__plan_groups_free(g);
        g->fail_key = key;
    }
    builder_free(&B);
    return rc;
}

void sts__plan_groups_free(sts_plan_groups *g)
{
    free(g->tensors);
    free(g->order);
    free(g->shape_pool);
    memset(g, 0, sizeof *g);
}

int sts__plan_build(const sts_plan_block *blocks, size_t nblocks, const sts_plan_opts *opts,
                    sts_plan **out, sts_diag *diag)
{
    int rc = STS_OK;
    sts_plan_groups g;
    *out = NULL;
    STS_CHECK(sts__plan_group(blocks, nblocks, NULL, opts, &g, diag));
    STS_CHECK(sts__plan_layout_from_summaries(g.tensors, g.ntensors, opts, out, diag));
    (*out)->blocks = blocks;
    (*out)->nblocks_in = nblocks;
    (*out)->order = g.order;
    (*out)->shape_pool = g.shape_pool;
    g.order = NULL;
    g.shape_pool = NULL;
done:
    sts__plan_groups_free(&g);
    return rc;
}

void sts__plan_opts_output(sts_plan_opts *po, const sts_consolidate_opts *co,
                           const sts_plan_map_entry *map, size_t nmap)
{
    memset(po, 0, sizeof *po);
    po->map = map;
    po->nmap = nmap;
    po->max_file_size = co->max_file_size;
    po->layout = co->layout;
    po->align = co->align;
    po->drop_unmapped = co->drop_unmapped;
    po->measure_only = 1;
}

void sts__plan_free(sts_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nfiles; i++) {
        free(p->files[i].name);
        sts_free(p->files[i].header);
    }
    free(p->files);
    free(p->tensors);
    free(p->order);
    free(p->shape_pool);
    free(p);
}
