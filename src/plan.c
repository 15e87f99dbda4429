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

#include "plan.h"

/* Work state of one tensor while the plan is built. */
typedef struct tacc {
    size_t first, n;   /* range of order[] */
    size_t first_seen; /* first block (for messages and first-appearance order) */
    uint64_t *shape;   /* into shape_pool */
    uint64_t nbytes;
    uint64_t fill_key; /* position in the file's given order */
    uint64_t out_off;
    unsigned file; /* 1-based output file; 0 = dropped */
} tacc;

typedef struct builder {
    const sts_plan_block *b;
    size_t nb;
    const sts_plan_opts *o;
    sts_diag *diag;
    uint32_t *tid; /* tensor id of every block */
    size_t *slots; /* hash table: tensor id + 1, 0 = empty */
    size_t nslots;
    tacc *t;
    size_t nt, capt;
    size_t *order;
    size_t *scratch; /* sort scratch: as many entries as the largest tensor has blocks */
    unsigned file_count;
    size_t ndropped;
} builder;

/* ---- small helpers ------------------------------------------------------ */

static const char *fname(const builder *B, uint32_t file, char *buf, size_t len)
{
    if (B->o->file_names)
        return B->o->file_names[file];
    snprintf(buf, len, "input file #%u", file);
    return buf;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
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

static uint64_t hash_name(const char *s, size_t n)
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
typedef int (*idx_cmp)(size_t a, size_t b, const void *ctx);

static void sort_idx(size_t *a, size_t n, size_t *tmp, idx_cmp cmp, const void *ctx)
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

static int grow_table(builder *B)
{
    size_t n = B->nslots ? B->nslots * 2 : 1024;
    size_t *s = sts__calloc_array(n, sizeof *s);
    if (!s)
        return STS_E_NOMEM;
    for (size_t i = 0; i < B->nslots; i++) {
        size_t id = B->slots[i];
        if (!id)
            continue;
        const sts_plan_block *f = &B->b[B->t[id - 1].first_seen];
        size_t h = (size_t)hash_name(f->name, f->name_len) & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = id;
    }
    free(B->slots);
    B->slots = s;
    B->nslots = n;
    return STS_OK;
}

/* The tensor id of name, or -1 when no block has it. */
static long lookup(const builder *B, const char *name, size_t len)
{
    size_t h = (size_t)hash_name(name, len) & (B->nslots - 1);
    for (size_t id; (id = B->slots[h]) != 0; h = (h + 1) & (B->nslots - 1)) {
        const sts_plan_block *f = &B->b[B->t[id - 1].first_seen];
        if (f->name_len == len && memcmp(f->name, name, len) == 0)
            return (long)(id - 1);
    }
    return -1;
}

static int add_tensor(builder *B, size_t blk, uint32_t *id)
{
    if (B->nt == B->capt) {
        size_t cap = B->capt ? B->capt * 2 : 256;
        tacc *t = sts__realloc_array(B->t, cap, sizeof *t);
        if (!t)
            return STS_E_NOMEM;
        B->t = t;
        B->capt = cap;
    }
    memset(&B->t[B->nt], 0, sizeof B->t[B->nt]);
    B->t[B->nt].first_seen = blk;
    *id = (uint32_t)B->nt++;
    return STS_OK;
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
static int group_blocks(builder *B)
{
    int rc = STS_OK;
    size_t *start = NULL;
    STS_CHECK(grow_table(B));
    for (size_t i = 0; i < B->nb; i++) {
        const sts_plan_block *b = &B->b[i];
        long id;
        STS_CHECK(check_block(B, i));
        id = lookup(B, b->name, b->name_len);
        if (id < 0) {
            uint32_t nid;
            size_t h;
            STS_CHECK(add_tensor(B, i, &nid));
            if (2 * B->nt > B->nslots)
                STS_CHECK(grow_table(B));
            h = (size_t)hash_name(b->name, b->name_len) & (B->nslots - 1);
            while (B->slots[h])
                h = (h + 1) & (B->nslots - 1);
            B->slots[h] = (size_t)nid + 1;
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
    sort_idx(v, T->n, B->scratch, cmp_box, B->b);
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

static int check_tensors(builder *B, uint64_t *pool)
{
    int rc = STS_OK;
    for (size_t t = 0; t < B->nt; t++) {
        tacc *T = &B->t[t];
        const sts_plan_block *f = &B->b[T->first_seen];
        STS_CHECK(tensor_shape(B, T, pool));
        pool += f->ndim;
        STS_CHECK(check_subbyte(B, T));
        STS_CHECK(check_coverage(B, T));
        dedupe(B, T);
        if (memchr(f->name, '\0', f->name_len))
            STS_GOTO_IF(1, B->diag, STS_E_UNSUPPORTED,
                        "a tensor name contains U+0000 (input %u): it cannot be written", f->file);
    }
done:
    return rc;
}

/* ---- output files ------------------------------------------------------- */

/* The reference writer's order: dtype rank descending, then name bytewise. */
static int cmp_canonical(size_t a, size_t b, const void *ctx)
{
    const builder *B = ctx;
    const sts_plan_block *x = &B->b[B->t[a].first_seen], *y = &B->b[B->t[b].first_seen];
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* Appends "'name'" to a list of at most 3 names for a message. */
static void list_name(char *buf, size_t len, size_t count, const char *name)
{
    size_t k = strlen(buf);
    if (count < 3)
        snprintf(buf + k, len - k, "%s'%s'", count ? ", " : "", name);
    else if (count == 3)
        snprintf(buf + k, len - k, ", ...");
}

static int assign_mapping(builder *B)
{
    char missing[512] = "", unmapped[512] = "";
    size_t nmissing = 0, nunmapped = 0;
    for (size_t i = 0; i < B->o->nmap; i++) {
        const sts_plan_map_entry *e = &B->o->map[i];
        long id = lookup(B, e->name, strlen(e->name));
        if (e->file_index == 0)
            return sts__fail(B->diag, STS_E_MAPPING, "mapping: tensor '%s' has file index 0",
                             e->name);
        if (e->file_index > B->file_count)
            B->file_count = e->file_index;
        if (id < 0) {
            list_name(missing, sizeof missing, nmissing++, e->name);
            continue;
        }
        B->t[id].file = e->file_index;
        B->t[id].fill_key = i;
    }
    if (nmissing)
        return sts__fail(B->diag, STS_E_MAPPING,
                         "the mapping names %zu tensor(s) that no input file has: %s", nmissing,
                         missing);
    for (size_t t = 0; t < B->nt; t++) {
        if (B->t[t].file)
            continue;
        if (B->o->drop_unmapped)
            B->ndropped++;
        else
            list_name(unmapped, sizeof unmapped, nunmapped++, B->b[B->t[t].first_seen].name);
    }
    if (nunmapped)
        return sts__fail(B->diag, STS_E_MAPPING,
                         "%zu tensor(s) of the input are missing from the mapping: %s (they can "
                         "be dropped on request)",
                         nunmapped, unmapped);
    return STS_OK;
}

/*
 * Hugging Face's split: walk the tensors in order; one larger than the limit
 * becomes a shard of its own at once, while the open shard stays open;
 * otherwise a tensor that would push the open shard over the limit closes
 * it first.  Shards are numbered in the order they are closed.
 */
static int assign_size(builder *B)
{
    int rc = STS_OK;
    size_t *ord = sts__malloc_array(B->nt, sizeof *ord);
    size_t *tmp = sts__malloc_array(B->nt, sizeof *tmp);
    uint64_t max = B->o->max_file_size, cur = 0;
    unsigned nshards = 0;
    size_t cur_first = 0, cur_n = 0;
    STS_GOTO_IF(!ord || !tmp, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B->nt; t++)
        ord[t] = t;
    sort_idx(ord, B->nt, tmp, cmp_canonical, B);
    /* The open shard's members are ord entries moved to tmp[cur_first..] as they join. */
    for (size_t i = 0; i < B->nt; i++) {
        tacc *T = &B->t[ord[i]];
        T->fill_key = i;
        if (T->nbytes > max) {
            T->file = ++nshards;
            continue;
        }
        if (cur_n > 0 && cur + T->nbytes > max) {
            ++nshards;
            for (size_t m = cur_first; m < cur_first + cur_n; m++)
                B->t[tmp[m]].file = nshards;
            cur_first += cur_n;
            cur_n = 0;
            cur = 0;
        }
        tmp[cur_first + cur_n++] = ord[i];
        cur += T->nbytes;
    }
    if (cur_n > 0) {
        ++nshards;
        for (size_t m = cur_first; m < cur_first + cur_n; m++)
            B->t[tmp[m]].file = nshards;
    }
    B->file_count = nshards;
done:
    free(ord);
    free(tmp);
    return rc;
}

static int assign_files(builder *B)
{
    if (B->o->map)
        return assign_mapping(B);
    if (B->o->max_file_size > 0)
        return assign_size(B);
    for (size_t t = 0; t < B->nt; t++) {
        B->t[t].file = 1;
        B->t[t].fill_key = t; /* first appearance: input file order, then header order */
    }
    B->file_count = 1;
    return STS_OK;
}

static int cmp_given(size_t a, size_t b, const void *ctx)
{
    const tacc *x = &((const builder *)ctx)->t[a], *y = &((const builder *)ctx)->t[b];
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->fill_key < y->fill_key ? -1 : x->fill_key > y->fill_key;
}

static int cmp_offset(size_t a, size_t b, const void *ctx)
{
    const tacc *x = &((const builder *)ctx)->t[a], *y = &((const builder *)ctx)->t[b];
    if (x->out_off != y->out_off)
        return x->out_off < y->out_off ? -1 : 1;
    return x->fill_key < y->fill_key ? -1 : x->fill_key > y->fill_key;
}

/* Encodes one output file's header for tensors ids[0..n) and fixes their offsets. */
static int encode_file(builder *B, sts_plan_file *F, unsigned index, const size_t *ids, size_t n)
{
    int rc = STS_OK;
    static const sts_meta_entry fmt_pt = {"format", "pt"};
    sts_tensor_desc *d = sts__malloc_array(n, sizeof *d);
    uint64_t *begin = sts__malloc_array(n, sizeof *begin), *end = sts__malloc_array(n, sizeof *end);
    char name[64];
    STS_GOTO_IF(!d || !begin || !end, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const sts_plan_block *f = &B->b[B->t[ids[i]].first_seen];
        d[i].name = f->name;
        d[i].dtype = f->dtype;
        d[i].ndim = f->ndim;
        d[i].shape = B->t[ids[i]].shape;
    }
    snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", index, B->file_count);
    F->name = sts__strdup(name);
    STS_GOTO_IF(!F->name, B->diag, STS_E_NOMEM, "out of memory");
    rc = sts_header_encode(d, n, B->o->layout == STS_LAYOUT_CANONICAL ? &fmt_pt : NULL,
                           B->o->layout == STS_LAYOUT_CANONICAL ? 1 : 0, B->o->layout, B->o->align,
                           &F->header, &F->header_len, begin, end, B->diag);
    if (rc != STS_OK) {
        sts__diag_prefix(B->diag, "output file %s", name);
        goto done;
    }
    F->data_size = 0;
    for (size_t i = 0; i < n; i++) {
        B->t[ids[i]].out_off = F->header_len + begin[i];
        if (end[i] > F->data_size)
            F->data_size = end[i];
    }
done:
    free(d);
    free(begin);
    free(end);
    return rc;
}

static void fill_tensor(const builder *B, const tacc *T, size_t fidx, sts_plan_tensor *o)
{
    const sts_plan_block *f = &B->b[T->first_seen];
    o->name = f->name;
    o->name_len = f->name_len;
    o->dtype = f->dtype;
    o->ndim = f->ndim;
    o->shape = T->shape;
    o->nbytes = T->nbytes;
    o->file = (uint32_t)fidx;
    o->out_off = T->out_off;
    o->first_block = T->first;
    o->nblocks = T->n;
}

/* Lays out one output file holding tensors ids[0..n) (sorted into output order here). */
static int add_file(builder *B, sts_plan *P, unsigned index, size_t *ids, size_t n, size_t first,
                    size_t *tmp, uint64_t *stream)
{
    int rc = STS_OK;
    sts_plan_file *F = &P->files[P->nfiles++];
    STS_CHECK(encode_file(B, F, index, ids, n));
    sort_idx(ids, n, tmp, cmp_offset, B);
    F->stream_off = *stream;
    F->first_tensor = first;
    F->ntensors = n;
    for (size_t m = 0; m < n; m++) {
        fill_tensor(B, &B->t[ids[m]], P->nfiles - 1, &P->tensors[first + m]);
        P->tensors[first + m].stream_off = *stream + (B->t[ids[m]].out_off - F->header_len);
    }
    STS_GOTO_IF(sts__add_u64(*stream, F->data_size, stream), B->diag, STS_E_VALIDATION_OVERFLOW,
                "output size overflows 64 bits");
done:
    return rc;
}

/* Groups the kept tensors into files, encodes the headers and lays out the stream. */
static int build_files(builder *B, sts_plan *P)
{
    int rc = STS_OK;
    size_t kept = B->nt - B->ndropped, n = 0;
    size_t *ids = sts__malloc_array(kept, sizeof *ids), *tmp = sts__malloc_array(kept, sizeof *tmp);
    uint64_t stream = 0;
    STS_GOTO_IF(!ids || !tmp, B->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < B->nt; t++)
        if (B->t[t].file)
            ids[n++] = t;
    sort_idx(ids, n, tmp, cmp_given, B);
    P->tensors = sts__calloc_array(n, sizeof *P->tensors);
    P->files = sts__calloc_array(n ? n : 1, sizeof *P->files);
    STS_GOTO_IF(!P->tensors || !P->files, B->diag, STS_E_NOMEM, "out of memory");
    if (B->file_count == 0)
        B->file_count = 1;
    P->file_count = B->file_count;
    P->ntensors = n;
    P->ndropped = B->ndropped;
    if (n == 0) /* nothing to consolidate: still one valid, empty file */
        STS_CHECK(add_file(B, P, 1, ids, 0, 0, tmp, &stream));
    for (size_t i = 0, j; i < n; i = j) {
        unsigned index = B->t[ids[i]].file;
        for (j = i; j < n && B->t[ids[j]].file == index; j++)
            ;
        STS_CHECK(add_file(B, P, index, ids + i, j - i, i, tmp, &stream));
    }
    P->total_bytes = stream;
done:
    free(ids);
    free(tmp);
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

int sts__plan_build(const sts_plan_block *blocks, size_t nblocks, const sts_plan_opts *opts,
                    sts_plan **out, sts_diag *diag)
{
    int rc = STS_OK;
    builder B;
    sts_plan *P = NULL;
    size_t dims = 0;
    memset(&B, 0, sizeof B);
    B.b = blocks;
    B.nb = nblocks;
    B.o = opts;
    B.diag = diag;
    *out = NULL;
    P = calloc(1, sizeof *P);
    B.tid = sts__malloc_array(nblocks, sizeof *B.tid);
    B.order = sts__malloc_array(nblocks, sizeof *B.order);
    STS_GOTO_IF(!P || !B.tid || !B.order, diag, STS_E_NOMEM, "out of memory");
    P->blocks = blocks;
    P->nblocks_in = nblocks;
    STS_CHECK(group_blocks(&B));
    free(B.tid);
    B.tid = NULL;
    for (size_t t = 0; t < B.nt; t++)
        dims += B.b[B.t[t].first_seen].ndim;
    STS_CHECK(alloc_work(&B));
    P->shape_pool = sts__malloc_array(dims, sizeof *P->shape_pool);
    STS_GOTO_IF(!P->shape_pool, diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(check_tensors(&B, P->shape_pool));
    STS_CHECK(assign_files(&B));
    STS_CHECK(build_files(&B, P));
    P->order = B.order;
    B.order = NULL;
    *out = P;
    P = NULL;
done:
    sts__plan_free(P);
    free(B.tid);
    free(B.slots);
    free(B.t);
    free(B.order);
    free(B.scratch);
    return rc;
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
