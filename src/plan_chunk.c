/*
 * plan_chunk.c - the data-phase half of the planner: rank ranges, chunks,
 * the input runs of a chunk and the in-memory scatter (see plan.h).  Pure:
 * no MPI, no I/O.
 */
#include <stdlib.h>
#include <string.h>

#include "plan.h"

/* ---- byte view ------------------------------------------------------------ */

static uint32_t gdims(const sts_plan_tensor *t)
{
    return t->ndim ? t->ndim : 1;
}

/* x elements of `bits` bits in bytes, without overflowing x * bits. */
static uint64_t to_bytes(uint64_t x, unsigned bits)
{
    return (x / 8) * bits + (x % 8) * bits / 8;
}

/* Size of byte-view dimension k of tensor t. */
static uint64_t tdim(const sts_plan_tensor *t, uint32_t k)
{
    unsigned bits = sts_dtype_bits(t->dtype);
    if (t->ndim == 0)
        return bits / 8;
    return k + 1 == t->ndim ? to_bytes(t->shape[k], bits) : t->shape[k];
}

/* Byte-view start and size of block b in dimension k. */
static void bdim(const sts_plan_tensor *t, const sts_plan_block *b, uint32_t k, uint64_t *off,
                 uint64_t *size)
{
    unsigned bits = sts_dtype_bits(t->dtype);
    if (t->ndim == 0) {
        *off = 0;
        *size = bits / 8;
    } else if (k + 1 == t->ndim) {
        *off = to_bytes(b->offsets[k], bits);
        *size = to_bytes(b->shape[k], bits);
    } else {
        *off = b->offsets[k];
        *size = b->shape[k];
    }
}

void sts__plan_chunk_rows(const sts_plan_tensor *t, uint64_t budget, uint32_t *d,
                          uint64_t *rowbytes, uint64_t *nrows)
{
    uint32_t g = gdims(t);
    uint64_t inner = 1;
    *d = 0;
    *rowbytes = 0;
    *nrows = 0;
    if (t->nbytes == 0)
        return;
    /* Walk outwards from the last dimension while the inner volume still fits:
     * every dimension is >= 1 here, so the products never exceed nbytes. */
    *d = g - 1;
    while (*d > 0 && inner * tdim(t, *d) <= budget) {
        inner *= tdim(t, *d);
        (*d)--;
    }
    *rowbytes = inner;
    *nrows = t->nbytes / inner;
}

/* The stream position where the weight from the start reaches target. */
static uint64_t weighted_cut(const sts_plan *p, unsigned __int128 target)
{
    unsigned __int128 cw = 0; /* weight before pos */
    uint64_t pos = 0;
    for (size_t i = 0; i < p->ntensors; i++) {
        const sts_plan_tensor *t = &p->tensors[i];
        unsigned __int128 w;
        /* Padding between tensors weighs its bytes; an empty tensor may sit at
         * the offset of the one before it (stream_off < pos). */
        if (t->stream_off > pos) {
            unsigned __int128 gap = t->stream_off - pos;
            if (cw + gap >= target)
                return pos + (uint64_t)(target - cw);
            cw += gap;
            pos = t->stream_off;
        }
        w = (unsigned __int128)t->nbytes + (unsigned __int128)STS_PLAN_BLOCK_COST * t->cost_blocks;
        if (cw + w >= target)
            return t->nbytes ? pos + (uint64_t)((target - cw) * t->nbytes / w) : pos;
        cw += w;
        if (t->stream_off + t->nbytes > pos)
            pos = t->stream_off + t->nbytes;
    }
    return cw + (p->total_bytes - pos) >= target ? pos + (uint64_t)(target - cw) : p->total_bytes;
}

void sts__plan_chunk_rank_range(const sts_plan *p, int rank, int nranks, uint64_t *lo, uint64_t *hi)
{
    unsigned __int128 total = p->total_bytes;
    for (size_t i = 0; i < p->ntensors; i++)
        total += (unsigned __int128)STS_PLAN_BLOCK_COST * p->tensors[i].cost_blocks;
    *lo = rank == 0 ? 0 : weighted_cut(p, total * (unsigned)rank / (unsigned)nranks);
    *hi = rank + 1 == nranks ? p->total_bytes
                             : weighted_cut(p, total * (unsigned)(rank + 1) / (unsigned)nranks);
    if (*hi > p->total_bytes) /* cannot happen; keeps a share inside the stream regardless */
        *hi = p->total_bytes;
    if (*lo > *hi)
        *lo = *hi;
}

/* ---- chunks ---------------------------------------------------------------- */

void sts__plan_chunk_iter_init(sts_plan_iter *it, const sts_plan *p, int rank, int nranks,
                               uint64_t budget)
{
    size_t a = 0, b = p->ntensors;
    memset(it, 0, sizeof *it);
    it->p = p;
    it->budget = budget < 8 ? 8 : budget;
    sts__plan_chunk_rank_range(p, rank, nranks, &it->lo, &it->hi);
    /* First tensor that ends after lo (stream offsets and ends never decrease). */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (p->tensors[m].stream_off + p->tensors[m].nbytes <= it->lo)
            a = m + 1;
        else
            b = m;
    }
    it->t = a;
}

/* Fixes the current tensor's rows that belong to this rank. */
static void enter_tensor(sts_plan_iter *it)
{
    const sts_plan_tensor *T = &it->p->tensors[it->t];
    uint64_t s = T->stream_off, nrows;
    uint64_t a = (it->lo > s ? it->lo : s) - s;
    uint64_t b = (it->hi < s + T->nbytes ? it->hi : s + T->nbytes) - s;
    sts__plan_chunk_rows(T, it->budget, &it->d, &it->rowbytes, &nrows);
    /* Both ends round down to a row, so neighbouring ranks split at the same row. */
    it->row = it->rowbytes ? a / it->rowbytes : 0;
    it->rend = it->rowbytes ? b / it->rowbytes : 0;
    it->nd = tdim(T, it->d);
    it->started = 1;
}

int sts__plan_chunk_iter_next(sts_plan_iter *it, sts_plan_chunk *c)
{
    const sts_plan *p = it->p;
    for (;;) {
        const sts_plan_tensor *T;
        uint64_t end, k;
        if (it->t >= p->ntensors || p->tensors[it->t].stream_off >= it->hi)
            return 0;
        if (!it->started)
            enter_tensor(it);
        if (it->row >= it->rend) {
            it->t++;
            it->started = 0;
            continue;
        }
        T = &p->tensors[it->t];
        k = it->budget / it->rowbytes;
        end = (it->row / it->nd + 1) * it->nd; /* a chunk never crosses dims 0..d-1 */
        if (end > it->rend)
            end = it->rend;
        if (end - it->row > k)
            end = it->row + k;
        c->tensor = it->t;
        c->file = T->file;
        c->row0 = it->row;
        c->row1 = end;
        c->d = it->d;
        c->rowbytes = it->rowbytes;
        c->out_off = T->out_off + it->row * it->rowbytes;
        c->len = (end - it->row) * it->rowbytes;
        it->row = end;
        return 1;
    }
}

/* ---- pieces ---------------------------------------------------------------- */

/* Room for one more piece / active block (doubling). */
static int more_pieces(sts_plan_pieces *ps)
{
    sts_plan_piece *v = sts__grow(ps->v, &ps->cap, ps->n + 1, sizeof *v, 16);
    if (!v)
        return STS_E_NOMEM;
    ps->v = v;
    return STS_OK;
}

static int more_active(sts_plan_pieces *ps)
{
    size_t *v = sts__grow(ps->active, &ps->capactive, ps->nactive + 1, sizeof *v, 16);
    if (!v)
        return STS_E_NOMEM;
    ps->active = v;
    return STS_OK;
}

/* The chunk's indices: prefix p[0..d) and the range [*i0, *i1) of dimension d. */
static void chunk_index(const sts_plan_tensor *T, const sts_plan_chunk *c, uint64_t *p,
                        uint64_t *i0, uint64_t *i1)
{
    uint64_t nd = tdim(T, c->d), pre = c->row0 / nd;
    *i0 = c->row0 % nd;
    *i1 = *i0 + (c->row1 - c->row0);
    for (uint32_t k = c->d; k-- > 0;) {
        p[k] = pre % tdim(T, k);
        pre /= tdim(T, k);
    }
}

/* Adds the run of block bi for chunk c, if the block meets the chunk. */
static int add_piece(const sts_plan *P, const sts_plan_chunk *c, const uint64_t *p, uint64_t i0,
                     uint64_t i1, size_t bi, sts_plan_pieces *ps)
{
    const sts_plan_tensor *T = &P->tensors[c->tensor];
    const sts_plan_block *b = &P->blocks[bi];
    uint32_t g = gdims(T), d = c->d;
    uint64_t off, size, a, e, lin = 0, inner = 1, pos = 0, stride = 1;
    sts_plan_piece *pc;
    for (uint32_t k = 0; k < d; k++) {
        bdim(T, b, k, &off, &size);
        if (p[k] < off || p[k] >= off + size)
            return STS_OK;
        lin = lin * size + (p[k] - off);
    }
    bdim(T, b, d, &off, &size);
    a = i0 > off ? i0 : off;
    e = i1 < off + size ? i1 : off + size;
    if (a >= e)
        return STS_OK;
    lin = lin * size + (a - off);
    for (uint32_t k = g; k-- > d + 1;) {
        uint64_t o, s;
        bdim(T, b, k, &o, &s);
        inner *= s;
        pos += o * stride;
        stride *= tdim(T, k);
    }
    if (more_pieces(ps) != STS_OK)
        return STS_E_NOMEM;
    pc = &ps->v[ps->n++];
    pc->block = bi;
    pc->file = b->file;
    pc->in_off = b->data_off + lin * inner;
    pc->len = (e - a) * inner;
    pc->pos = (a - i0) * c->rowbytes + pos;
    pc->contiguous = inner == c->rowbytes;
    return STS_OK;
}

int sts__plan_chunk_pieces(const sts_plan *P, const sts_plan_chunk *c, sts_plan_pieces *ps,
                           sts_diag *diag)
{
    const sts_plan_tensor *T = &P->tensors[c->tensor];
    const size_t *blk = P->order + T->first_block;
    uint64_t p[STS_PLAN_MAX_NDIM], i0, i1, lo0, hi0, off, size;
    size_t keep = 0;
    chunk_index(T, c, p, &i0, &i1);
    /* The chunk's interval in dimension 0 only moves forward along a rank's walk. */
    lo0 = c->d == 0 ? i0 : p[0];
    hi0 = c->d == 0 ? i1 : p[0] + 1;
    if (!ps->valid || ps->tensor != c->tensor || c->row0 < ps->last_row) {
        ps->tensor = c->tensor;
        ps->next = 0;
        ps->nactive = 0;
        ps->valid = 1;
    }
    ps->last_row = c->row0;
    for (; ps->next < T->nblocks; ps->next++) {
        bdim(T, &P->blocks[blk[ps->next]], 0, &off, &size);
        if (off >= hi0)
            break;
        if (more_active(ps) != STS_OK)
            return sts__fail(diag, STS_E_NOMEM, "out of memory");
        ps->active[ps->nactive++] = blk[ps->next];
    }
    ps->n = 0;
    for (size_t i = 0; i < ps->nactive; i++) {
        bdim(T, &P->blocks[ps->active[i]], 0, &off, &size);
        if (off + size <= lo0)
            continue; /* behind the walk for good */
        ps->active[keep++] = ps->active[i];
        if (add_piece(P, c, p, i0, i1, ps->active[i], ps) != STS_OK)
            return sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    ps->nactive = keep;
    return STS_OK;
}

void sts__plan_chunk_pieces_free(sts_plan_pieces *ps)
{
    free(ps->v);
    free(ps->active);
    memset(ps, 0, sizeof *ps);
}

/* ---- scatter ----------------------------------------------------------------- */

void sts__plan_chunk_scatter(const sts_plan *P, const sts_plan_chunk *c, const sts_plan_piece *pc,
                             const void *src, void *dst)
{
    const sts_plan_tensor *T = &P->tensors[c->tensor];
    const sts_plan_block *b = &P->blocks[pc->block];
    uint32_t g = gdims(T), d = c->d, m = g - 1;
    uint64_t ext[STS_PLAN_MAX_NDIM], gstride[STS_PLAN_MAX_NDIM], idx[STS_PLAN_MAX_NDIM];
    uint64_t off, unit, inner = 1, stride = 1, nrows;
    const unsigned char *s = src;
    unsigned char *o = (unsigned char *)dst + pc->pos;
    if (pc->contiguous) {
        memcpy(o, s, pc->len);
        return;
    }
    for (uint32_t k = g; k-- > d + 1;) {
        bdim(T, b, k, &off, &ext[k]);
        gstride[k] = stride;
        stride *= tdim(T, k);
        inner *= ext[k];
    }
    nrows = pc->len / inner;
    /* The largest unit contiguous in both: the last dimension, merged outwards
     * while the block spans a dimension completely. */
    unit = ext[m];
    while (m > d + 1 && ext[m] == tdim(T, m)) {
        m--;
        unit *= ext[m];
    }
    for (uint64_t r = 0; r < nrows; r++) {
        unsigned char *row = o + r * c->rowbytes;
        if (m == d + 1) {
            memcpy(row, s, unit);
            s += unit;
            continue;
        }
        /* Odometer over dims d+1 .. m-1; each step copies one unit. */
        for (uint32_t k = d + 1; k < m; k++)
            idx[k] = 0;
        for (;;) {
            uint64_t at = 0;
            uint32_t k;
            for (k = d + 1; k < m; k++)
                at += idx[k] * gstride[k];
            memcpy(row + at, s, unit);
            s += unit;
            for (k = m; k-- > d + 1;) {
                if (++idx[k] < ext[k])
                    break;
                idx[k] = 0;
            }
            if (k == d) /* wrapped through the outermost index */
                break;
        }
    }
}
