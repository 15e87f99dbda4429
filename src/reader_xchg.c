/*
 * reader_xchg.c - two-phase reads for sts_reader_read.
 *
 * A column block of a row-stored tensor is, in the file, one short run per
 * row: read exactly, that is one read call per row (a million 1.7 KiB reads
 * for a 2 GiB model at 4 ranks), and on a parallel file system each of them
 * is a lock and a round trip.  Reading the gaps too (data sieving) would
 * break the contract that a rank reads only the bytes it needs.
 *
 * When the ranks together ask for every byte of a contiguous row range of a
 * stored block (the usual case: loading a whole checkpoint into a new
 * sharding), each byte of that range is needed by someone, so the range can
 * be split into a few large contiguous reads, one part per rank, and the
 * parts redistributed through MPI.  This is ROMIO's collective buffering
 * for reads, with file domains taken per stored block; every rank still
 * reads about as many bytes as it asked for, and nobody reads a byte that
 * nobody asked for.
 *
 * Every rank decides the same way from the same data: requests are gathered
 * with sts__exchange_allgather, and for each stored block the intersections with all
 * ranks' requests are computed.  A block takes the two-phase path when
 *  - some intersection is strided in the file with runs under
 *    XCHG_RUN_BYTES (otherwise direct reads are already large), and
 *  - the distinct intersections tile a row range of the block exactly
 *    (identical boxes, e.g. a replicated tensor read by every rank, count
 *    once), and every extent fits an int (MPI datatypes).
 * The row range is cut into one part per rank (rotated from block to block
 * so small blocks spread out) and parts into units that fit the staging
 * buffer.  Rounds: each rank reads its units of the round into its staging
 * buffer with plain contiguous reads, then one MPI_Alltoallw moves every
 * piece; send and receive sides are subarray types at absolute addresses
 * (MPI_BOTTOM), so pieces go straight from staging into the callers'
 * buffers.  Both sides list pieces in the same order (units in plan order,
 * then requests in gathered order), which makes the type signatures match.
 * Each round agrees on errors before its MPI_Alltoallw, so a failed read
 * on one rank never leaves the others waiting for data.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "mpiio.h"
#include "reader.h"

/* Runs at least this long are read directly: the call cost is small next to the copy. */
#define XCHG_RUN_BYTES ((uint64_t)64 << 10)
/* Blocks with longer rows are read directly: a unit is at least one row, staged whole. */
#define XCHG_ROW_MAX ((uint64_t)64 << 20)

/* One request of some rank, as every rank sees it after the gather. */
typedef struct greq {
    int rank;
    size_t tix;
    const uint64_t *off, *shape; /* into the gathered array */
    unsigned char *buf;          /* this rank's own requests only */
} greq;

/* A stored block read in two phases: rows [lo, hi) of block blk. */
typedef struct xblock {
    size_t blk, tix;
    uint64_t lo, hi, rowbytes;
    size_t first, nreq; /* its requests: xreq[first .. first + nreq) */
} xblock;

/* Rows [lo, hi) of xblock xb, read by owner in round `round`. */
typedef struct xunit {
    size_t xb, round;
    uint64_t lo, hi, stage_off;
    int owner;
} xunit;

struct sts__xplan {
    uint64_t *gdata;
    greq *g;
    size_t ng;
    xblock *xb;
    size_t nxb, cap_xb;
    size_t *xreq;
    size_t nxreq, cap_xreq;
    xunit *u;
    size_t nu, cap_u;
    size_t nrounds;
    size_t *rstart, *rorder; /* round t's units: rorder[rstart[t] .. rstart[t + 1]), plan order */
    uint64_t stage_bytes;    /* this rank's largest round */
    unsigned char *skip;     /* per r->blocks entry: read in two phases */
};

void sts__reader_xchg_free(sts__xplan *p)
{
    if (!p)
        return;
    free(p->gdata);
    free(p->g);
    free(p->xb);
    free(p->xreq);
    free(p->u);
    free(p->rstart);
    free(p->rorder);
    free(p->skip);
    free(p);
}

int sts__reader_xchg_skips(const sts__xplan *p, size_t blk)
{
    return p && p->skip[blk];
}

/* ---- gathering the requests ------------------------------------------------- */

/* This rank's requests as u64 records: tensor index, offsets, shape. */
static int pack_reqs(const sts_reader *r, const sts_read_req *reqs, size_t n, sts_bytes *b)
{
    int rc = STS_OK;
    for (size_t i = 0; i < n && rc == STS_OK; i++) {
        uint64_t tix = (uint64_t)sts_reader_find(r, reqs[i].name);
        rc = sts__bytes_put(b, &tix, sizeof tix);
        if (rc == STS_OK)
            rc = sts__bytes_put(b, reqs[i].offsets, reqs[i].ndim * sizeof(uint64_t));
        if (rc == STS_OK)
            rc = sts__bytes_put(b, reqs[i].shape, reqs[i].ndim * sizeof(uint64_t));
    }
    return rc;
}

/* Splits the gathered records (rank k's: len[k] bytes, back to back) into p->g; own
 * requests get their buffers. */
static int unpack_reqs(const sts_reader *r, sts__xplan *p, const uint64_t *len,
                       const sts_read_req *reqs, sts_diag *diag)
{
    size_t at = 0, cap = 0;
    for (int k = 0; k < r->nranks; k++) {
        size_t end = at + (size_t)(len[k] / 8), mine = 0;
        while (at < end) {
            uint64_t tix = p->gdata[at];
            greq *q;
            if (tix >= r->ntensors)
                return sts__fail(diag, STS_E_MPI, "request record of rank %d is malformed", k);
            q = sts__grow(p->g, &cap, p->ng + 1, sizeof *q, 64);
            if (!q)
                return sts__fail(diag, STS_E_NOMEM, "out of memory");
            p->g = q;
            q = &p->g[p->ng++];
            q->rank = k;
            q->tix = (size_t)tix;
            q->off = p->gdata + at + 1;
            q->shape = q->off + r->tensors[tix].ndim;
            q->buf = k == r->rank ? reqs[mine++].buf : NULL;
            at += 1 + 2 * (size_t)r->tensors[tix].ndim;
        }
    }
    return STS_OK;
}

/* Collective, agreed up to the unpacking (whose errors the caller agrees on). */
static int gather_reqs(sts_reader *r, const sts_read_req *reqs, size_t n, sts__xplan *p,
                       sts_diag *diag)
{
    int rc = STS_OK;
    sts_bytes b = {NULL, 0, 0};
    unsigned char *all = NULL;
    uint64_t *start = sts__malloc_array((size_t)r->nranks, sizeof *start);
    uint64_t *len = sts__malloc_array((size_t)r->nranks, sizeof *len);
    if (!p || !start || !len || pack_reqs(r, reqs, n, &b) != STS_OK)
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__exchange_allgather(r->comm, rc, &b, &all, start, len, diag));
    sts__exchange_compact(all, start, len, r->nranks);
    p->gdata = (uint64_t *)(void *)all;
    rc = unpack_reqs(r, p, len, reqs, diag);
done:
    sts__bytes_free(&b);
    free(start);
    free(len);
    return rc;
}

/* ---- choosing the blocks ------------------------------------------------------ */

/* Box of request q inside stored block b, relative to the block: 1 if they meet. */
static int meet(const sts__rblock *b, uint32_t ndim, const greq *q, uint64_t *lo, uint64_t *ext)
{
    for (uint32_t d = 0; d < ndim; d++) {
        uint64_t a = q->off[d] > b->offsets[d] ? q->off[d] : b->offsets[d];
        uint64_t qe = q->off[d] + q->shape[d], be = b->offsets[d] + b->shape[d];
        uint64_t e = qe < be ? qe : be;
        if (a >= e)
            return 0;
        lo[d] = a - b->offsets[d];
        ext[d] = e - a;
    }
    return 1;
}

/* Bytes of the box's longest contiguous file run inside block shape bs. */
static uint64_t file_run(uint32_t ndim, const uint64_t *bs, const uint64_t *ext, uint64_t esize)
{
    uint64_t run = esize * ext[ndim - 1];
    for (uint32_t d = ndim - 1; d > 0 && ext[d] == bs[d]; d--)
        run *= ext[d - 1];
    return run;
}

/* Whether a box of block shape bs is read as short runs: not one run, and runs under the limit. */
static int short_runs(uint32_t ndim, const uint64_t *bs, const uint64_t *ext, uint64_t esize)
{
    uint64_t bytes = esize, run = file_run(ndim, bs, ext, esize);
    for (uint32_t d = 0; d < ndim; d++)
        bytes *= ext[d];
    return run < bytes && run < XCHG_RUN_BYTES;
}

/* Scratch for judging one block: boxes of up to cap / ndim requests, and a global shape. */
typedef struct judge {
    uint64_t *lo, *ext;
    size_t cap;
    uint64_t gl[64];
} judge;

static int judge_reserve(judge *j, size_t n, uint32_t ndim)
{
    uint64_t *m;
    if ((size_t)n * ndim <= j->cap)
        return 0;
    m = sts__malloc_array((size_t)n * ndim * 2, sizeof *m);
    if (!m)
        return -1;
    free(j->lo);
    j->lo = m, j->ext = m + (size_t)n * ndim;
    j->cap = (size_t)n * ndim;
    return 0;
}

static int fits_int(const uint64_t *v, uint32_t n)
{
    for (uint32_t d = 0; d < n; d++) {
        if (v[d] > INT_MAX)
            return 0;
    }
    return 1;
}

/*
 * Whether stored block k, met by the requests cand[0..nc), takes the
 * two-phase path; on 1, rows [*lo, *hi) of the block are what the ranks need.
 * Negative: out of memory.
 */
static int eligible(const sts_reader *r, const sts__xplan *p, size_t k, const size_t *cand,
                    size_t nc, judge *j, uint64_t *lo, uint64_t *hi)
{
    const sts__rblock *b = &r->blocks[k];
    const sts_global_tensor *t = &r->tensors[p->g[cand[0]].tix];
    uint32_t nd = t->ndim;
    uint64_t es = sts_dtype_bits(t->dtype) / 8, rlo = UINT64_MAX, rhi = 0;
    int strided = 0;
    uint64_t row = es;
    if (nd < 2 || sts_dtype_bits(t->dtype) % 8 != 0 || es > INT_MAX || !fits_int(b->shape, nd))
        return 0;
    for (uint32_t d = 1; d < nd && row <= XCHG_ROW_MAX; d++)
        row *= b->shape[d];
    if (row > XCHG_ROW_MAX)
        return 0;
    if (judge_reserve(j, nc, nd) != 0)
        return -1;
    for (size_t i = 0; i < nc; i++) {
        uint64_t *l = j->lo + i * nd, *e = j->ext + i * nd;
        if (!fits_int(p->g[cand[i]].shape, nd))
            return 0;
        meet(b, nd, &p->g[cand[i]], l, e);
        strided |= short_runs(nd, b->shape, e, es);
        rlo = l[0] < rlo ? l[0] : rlo;
        rhi = l[0] + e[0] > rhi ? l[0] + e[0] : rhi;
    }
    if (!strided)
        return 0;
    for (size_t i = 0; i < nc; i++)
        j->lo[i * nd] -= rlo;
    /* The boxes must tile rows [rlo, rhi) at full width: then the range is exactly
     * what the ranks asked for, and it is contiguous in the file. */
    if (sts__coverage_check(nd, nc, j->lo, j->ext, 0, NULL, NULL, j->gl) != STS_OK)
        return 0;
    if (j->gl[0] != rhi - rlo || memcmp(j->gl + 1, b->shape + 1, (nd - 1) * sizeof *j->gl) != 0)
        return 0;
    *lo = rlo;
    *hi = rhi;
    return 1;
}

/* Requests grouped by tensor, in gathered order within a tensor. */
static int group_by_tensor(const sts_reader *r, const sts__xplan *p, size_t **start, size_t **order)
{
    size_t *s = sts__calloc_array(r->ntensors + 2, sizeof *s);
    size_t *o = sts__malloc_array(p->ng + 1, sizeof *o);
    if (!s || !o) {
        free(s);
        free(o);
        return -1;
    }
    for (size_t i = 0; i < p->ng; i++)
        s[p->g[i].tix + 2]++;
    for (size_t t = 0; t < r->ntensors; t++)
        s[t + 2] += s[t + 1];
    for (size_t i = 0; i < p->ng; i++)
        o[s[p->g[i].tix + 1]++] = i;
    *start = s; /* tensor t: o[s[t] .. s[t + 1]) */
    *order = o;
    return 0;
}

static int add_xblock(sts__xplan *p, const sts_reader *r, size_t k, size_t tix, uint64_t lo,
                      uint64_t hi, const size_t *cand, size_t nc)
{
    const sts_global_tensor *t = &r->tensors[tix];
    xblock *x = sts__grow(p->xb, &p->cap_xb, p->nxb + 1, sizeof *p->xb, 64);
    size_t *xr;
    uint64_t rb = sts_dtype_bits(t->dtype) / 8;
    if (!x)
        return -1;
    p->xb = x;
    xr = sts__grow(p->xreq, &p->cap_xreq, p->nxreq + nc, sizeof *p->xreq, 64);
    if (!xr)
        return -1;
    p->xreq = xr;
    for (uint32_t d = 1; d < t->ndim; d++)
        rb *= r->blocks[k].shape[d];
    x = &p->xb[p->nxb++];
    x->blk = k, x->tix = tix, x->lo = lo, x->hi = hi, x->rowbytes = rb;
    x->first = p->nxreq;
    x->nreq = nc;
    memcpy(p->xreq + p->nxreq, cand, nc * sizeof *cand);
    p->nxreq += nc;
    p->skip[k] = 1;
    return 0;
}

/* Finds the blocks that take the two-phase path. */
static int choose_blocks(const sts_reader *r, sts__xplan *p, sts_diag *diag)
{
    int rc = STS_OK;
    size_t *start = NULL, *order = NULL, *cand = NULL;
    judge j = {NULL, NULL, 0, {0}};
    uint64_t box[2 * 64];
    size_t nblocks = r->ntensors ? r->first[r->ntensors] : 0;
    p->skip = sts__calloc_array(nblocks + 1, 1);
    cand = sts__malloc_array(p->ng + 1, sizeof *cand);
    STS_GOTO_IF(!p->skip || !cand || group_by_tensor(r, p, &start, &order) != 0, diag, STS_E_NOMEM,
                "out of memory");
    for (size_t t = 0; t < r->ntensors; t++) {
        uint32_t nd = r->tensors[t].ndim;
        if (start[t] == start[t + 1] || nd < 2 || nd > 64)
            continue;
        for (size_t k = r->first[t]; k < r->first[t + 1]; k++) {
            size_t nc = 0;
            uint64_t lo = 0, hi = 0;
            int e;
            for (size_t i = start[t]; i < start[t + 1]; i++) {
                if (meet(&r->blocks[k], nd, &p->g[order[i]], box, box + 64))
                    cand[nc++] = order[i];
            }
            if (nc == 0)
                continue;
            e = eligible(r, p, k, cand, nc, &j, &lo, &hi);
            STS_GOTO_IF(e < 0 || (e > 0 && add_xblock(p, r, k, t, lo, hi, cand, nc) != 0), diag,
                        STS_E_NOMEM, "out of memory");
        }
    }
done:
    free(start);
    free(order);
    free(cand);
    free(j.lo);
    return rc;
}

/* ---- units and rounds --------------------------------------------------------- */

static int add_unit(sts__xplan *p, size_t xb, uint64_t lo, uint64_t hi, int owner)
{
    xunit *u = sts__grow(p->u, &p->cap_u, p->nu + 1, sizeof *p->u, 64);
    if (!u)
        return -1;
    p->u = u;
    p->u[p->nu].xb = xb;
    p->u[p->nu].lo = lo;
    p->u[p->nu].hi = hi;
    p->u[p->nu].owner = owner;
    p->nu++;
    return 0;
}

/*
 * Cuts each block's row range into one part per rank, owners rotating from
 * block to block, and parts into units of at most r->exchange_buffer bytes
 * (at least one row); then packs each owner's units into rounds.
 */
static int make_units(const sts_reader *r, sts__xplan *p, sts_diag *diag)
{
    int rc = STS_OK, P = r->nranks;
    size_t *round = sts__calloc_array((size_t)P, sizeof *round);
    uint64_t *used = sts__calloc_array((size_t)P, sizeof *used);
    STS_GOTO_IF(!round || !used, diag, STS_E_NOMEM, "out of memory");
    for (size_t x = 0; x < p->nxb; x++) {
        const xblock *b = &p->xb[x];
        uint64_t R = b->hi - b->lo, step = r->exchange_buffer / b->rowbytes;
        step = step ? step : 1;
        for (int k = 0; k < P; k++) {
            uint64_t lo = b->lo + R * (uint64_t)k / (uint64_t)P;
            uint64_t hi = b->lo + R * (uint64_t)(k + 1) / (uint64_t)P;
            for (uint64_t a = lo; a < hi; a += step) {
                int owner = (int)(((size_t)k + x) % (size_t)P);
                STS_GOTO_IF(add_unit(p, x, a, hi - a < step ? hi : a + step, owner) != 0, diag,
                            STS_E_NOMEM, "out of memory");
            }
        }
    }
    p->nrounds = 0;
    for (size_t i = 0; i < p->nu; i++) {
        xunit *u = &p->u[i];
        uint64_t bytes = (u->hi - u->lo) * p->xb[u->xb].rowbytes;
        if (used[u->owner] > 0 && used[u->owner] + bytes > r->exchange_buffer)
            round[u->owner]++, used[u->owner] = 0;
        u->round = round[u->owner];
        u->stage_off = used[u->owner];
        used[u->owner] += bytes;
        if (u->owner == r->rank && used[u->owner] > p->stage_bytes)
            p->stage_bytes = used[u->owner];
        p->nrounds = u->round + 1 > p->nrounds ? u->round + 1 : p->nrounds;
    }
    /* Units by round (a counting sort keeps plan order within a round), so that each
     * round touches only its own units. */
    p->rstart = sts__calloc_array(p->nrounds + 2, sizeof *p->rstart);
    p->rorder = sts__malloc_array(p->nu + 1, sizeof *p->rorder);
    STS_GOTO_IF(!p->rstart || !p->rorder, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < p->nu; i++)
        p->rstart[p->u[i].round + 2]++;
    for (size_t t = 0; t < p->nrounds; t++)
        p->rstart[t + 2] += p->rstart[t + 1];
    for (size_t i = 0; i < p->nu; i++)
        p->rorder[p->rstart[p->u[i].round + 1]++] = i;
done:
    free(round);
    free(used);
    return rc;
}

/*
 * Local.  Whether one of this rank's requests reads short strided runs from
 * some stored block, the only case a plan can help.  Computed before any
 * gathering, so that loads that read contiguous ranges (row loads, whole
 * tensors) cost one MPI_Allreduce and nothing else.
 */
static int wants_exchange(const sts_reader *r, const sts_read_req *reqs, size_t n)
{
    uint64_t lo[64], ext[64];
    for (size_t i = 0; i < n; i++) {
        size_t t = (size_t)sts_reader_find(r, reqs[i].name);
        const sts_global_tensor *g = &r->tensors[t];
        greq q = {0, t, reqs[i].offsets, reqs[i].shape, NULL};
        uint64_t es = sts_dtype_bits(g->dtype) / 8;
        if (g->ndim < 2 || g->ndim > 64 || sts_dtype_bits(g->dtype) % 8 != 0)
            continue;
        for (size_t k = r->first[t]; k < r->first[t + 1]; k++) {
            if (meet(&r->blocks[k], g->ndim, &q, lo, ext) &&
                short_runs(g->ndim, r->blocks[k].shape, ext, es))
                return 1;
        }
    }
    return 0;
}

/*
 * Collective, agreed.  With distributed metadata every rank plans from the
 * blocks of every rank's requests, so each fetches the same view: the blocks
 * that meet any gathered request.
 */
static int fetch_all(sts_reader *r, const sts__xplan *p, int rc, sts_diag *diag)
{
    sts__rbox *bx = NULL;
    if (rc == STS_OK) {
        bx = sts__malloc_array(p->ng + 1, sizeof *bx);
        if (!bx)
            rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; bx && i < p->ng; i++)
        bx[i] = (sts__rbox){p->g[i].tix, p->g[i].off, p->g[i].shape};
    rc = sts__reader_meta_fetch(r, rc, bx, bx ? p->ng : 0, diag);
    free(bx);
    return rc;
}

int sts__reader_xchg_make(sts_reader *r, const sts_read_req *reqs, size_t n, sts__xplan **out,
                          sts_diag *diag)
{
    int rc = STS_OK, any = 0;
    sts__xplan *p = NULL;
    *out = NULL;
    STS_MPI_CALL(diag, MPI_Allreduce,
                 (&(int){wants_exchange(r, reqs, n)}, &any, 1, MPI_INT, MPI_MAX, r->comm));
    if (!any)
        goto done; /* no plan: every block is read directly */
    p = calloc(1, sizeof *p);
    /* With p NULL the gather fails on every rank at its first agreement. */
    rc = gather_reqs(r, reqs, n, p, diag);
    if (r->dist)
        rc = fetch_all(r, p, rc, diag);
    STS_CHECK(rc);
    STS_CHECK(choose_blocks(r, p, diag));
    STS_CHECK(make_units(r, p, diag));
    *out = p;
    p = NULL;
done:
    sts__reader_xchg_free(p);
    return rc;
}

/* ---- rounds ------------------------------------------------------------------- */

/* One piece: the part of unit `unit` that request `req` needs. */
typedef struct piece {
    size_t unit, req;
} piece;

/* Pieces of one round grouped by peer: peer k's are v[at[k] .. at[k + 1]). */
typedef struct plist {
    piece *v;
    size_t *at;
} plist;

/* Rows of the piece (block-relative) and its box; 0 when the unit and request miss. */
static int piece_box(const sts_reader *r, const sts__xplan *p, const piece *c, uint64_t *lo,
                     uint64_t *ext)
{
    const xunit *u = &p->u[c->unit];
    const xblock *x = &p->xb[u->xb];
    uint64_t a, e;
    if (!meet(&r->blocks[x->blk], r->tensors[x->tix].ndim, &p->g[c->req], lo, ext))
        return 0;
    a = lo[0] > u->lo ? lo[0] : u->lo;
    e = lo[0] + ext[0] < u->hi ? lo[0] + ext[0] : u->hi;
    if (a >= e)
        return 0;
    lo[0] = a;
    ext[0] = e - a;
    return 1;
}

/*
 * Lists the round's pieces by peer.  sending: this rank's units, each with
 * the requests of every peer; else: every owner's units, each with this
 * rank's requests.  Both orders are units in plan order, then requests in
 * gathered order, so sender and receiver agree piece by piece.
 */
static int list_pieces(const sts_reader *r, const sts__xplan *p, size_t t, int sending, plist *l)
{
    size_t n = 0;
    uint64_t lo[64], ext[64];
    l->at = sts__calloc_array((size_t)r->nranks + 2, sizeof *l->at);
    for (int pass = 0; pass < 2 && l->at; pass++) {
        if (pass == 1) {
            for (int k = 0; k < r->nranks; k++)
                l->at[k + 2] += l->at[k + 1];
            l->v = sts__malloc_array(n + 1, sizeof *l->v);
            if (!l->v)
                return -1;
        }
        for (size_t ri = p->rstart[t]; ri < p->rstart[t + 1]; ri++) {
            size_t i = p->rorder[ri];
            const xunit *u = &p->u[i];
            const xblock *x = &p->xb[u->xb];
            if (sending && u->owner != r->rank)
                continue;
            for (size_t j = x->first; j < x->first + x->nreq; j++) {
                piece c = {i, p->xreq[j]};
                int peer = sending ? p->g[c.req].rank : u->owner;
                if ((!sending && p->g[c.req].rank != r->rank) || !piece_box(r, p, &c, lo, ext))
                    continue;
                if (pass == 0)
                    l->at[peer + 2]++, n++;
                else
                    l->v[l->at[peer + 1]++] = c;
            }
        }
    }
    return l->at ? 0 : -1;
}

/* The subarray type of one piece on one side, and the address it is relative to. */
static int piece_type(const sts_reader *r, const sts__xplan *p, const piece *c, int sending,
                      unsigned char *stage, MPI_Datatype *out, MPI_Aint *addr, uint64_t *bytes,
                      sts_diag *diag)
{
    int rc = STS_OK, sz[64], sub[64], st[64];
    const xunit *u = &p->u[c->unit];
    const xblock *x = &p->xb[u->xb];
    const sts__rblock *b = &r->blocks[x->blk];
    const greq *q = &p->g[c->req];
    const sts_global_tensor *t = &r->tensors[x->tix];
    uint64_t lo[64], ext[64], nb = sts_dtype_bits(t->dtype) / 8;
    MPI_Datatype elem = MPI_DATATYPE_NULL;
    *out = MPI_DATATYPE_NULL;
    piece_box(r, p, c, lo, ext);
    for (uint32_t d = 0; d < t->ndim; d++) {
        sub[d] = (int)ext[d];
        nb *= ext[d];
        if (sending) {
            sz[d] = (int)(d == 0 ? u->hi - u->lo : b->shape[d]);
            st[d] = (int)(d == 0 ? lo[0] - u->lo : lo[d]);
        } else {
            sz[d] = (int)q->shape[d];
            st[d] = (int)(b->offsets[d] + lo[d] - q->off[d]);
        }
    }
    STS_MPI_CALL(diag, MPI_Get_address, (sending ? stage + u->stage_off : q->buf, addr));
    STS_MPI_CALL(diag, MPI_Type_contiguous, ((int)(sts_dtype_bits(t->dtype) / 8), MPI_BYTE, &elem));
    STS_MPI_CALL(diag, MPI_Type_create_subarray,
                 ((int)t->ndim, sz, sub, st, MPI_ORDER_C, elem, out));
    *bytes += nb;
done:
    if (elem != MPI_DATATYPE_NULL)
        MPI_Type_free(&elem);
    return rc;
}

/* Scratch for building one peer's type: up to `cap` pieces. */
typedef struct tscratch {
    MPI_Datatype *pt;
    MPI_Aint *addr;
    int *ones;
} tscratch;

/* The committed struct type of n pieces; piece types are freed again. */
static int one_peer(const sts_reader *r, const sts__xplan *p, const piece *v, size_t n, int sending,
                    unsigned char *stage, tscratch *s, MPI_Datatype *out, uint64_t *bytes,
                    sts_diag *diag)
{
    int rc = STS_OK;
    size_t m = 0;
    STS_GOTO_IF(n > INT_MAX, diag, STS_E_NOMEM, "too many pieces for one peer");
    for (; m < n; m++) {
        s->ones[m] = 1;
        rc = piece_type(r, p, &v[m], sending, stage, &s->pt[m], &s->addr[m], bytes, diag);
        if (rc != STS_OK)
            goto done; /* piece_type left pt[m] null */
    }
    STS_MPI_CALL(diag, MPI_Type_create_struct, ((int)n, s->ones, s->addr, s->pt, out));
    STS_MPI_CALL(diag, MPI_Type_commit, (out));
done:
    /* A struct type keeps what it needs of its members. */
    while (m-- > 0)
        MPI_Type_free(&s->pt[m]);
    return rc;
}

/* One committed type per peer over the peer's pieces (count 0 for none). */
static int peer_types(const sts_reader *r, const sts__xplan *p, const plist *l, int sending,
                      unsigned char *stage, MPI_Datatype *types, int *counts, uint64_t *bytes,
                      sts_diag *diag)
{
    int rc = STS_OK;
    size_t most = 0;
    tscratch s;
    for (int k = 0; k < r->nranks; k++)
        most = l->at[k + 1] - l->at[k] > most ? l->at[k + 1] - l->at[k] : most;
    s.pt = sts__malloc_array(most + 1, sizeof *s.pt);
    s.addr = sts__malloc_array(most + 1, sizeof *s.addr);
    s.ones = sts__malloc_array(most + 1, sizeof *s.ones);
    STS_GOTO_IF(!s.pt || !s.addr || !s.ones, diag, STS_E_NOMEM, "out of memory");
    for (int k = 0; k < r->nranks; k++) {
        size_t n = l->at[k + 1] - l->at[k];
        uint64_t nb = 0;
        counts[k] = 0;
        if (n == 0 || k == r->rank)
            continue; /* copy_self moves this rank's own pieces */
        STS_CHECK(one_peer(r, p, l->v + l->at[k], n, sending, stage, &s, &types[k], &nb, diag));
        counts[k] = 1;
        *bytes += nb;
    }
done:
    free(s.pt);
    free(s.addr);
    free(s.ones);
    return rc;
}

/* Reads this rank's units of round t into the staging buffer. */
static int read_units(sts_reader *r, const sts__xplan *p, size_t t, unsigned char *stage,
                      sts_diag *diag)
{
    int rc = STS_OK;
    for (size_t ri = p->rstart[t]; ri < p->rstart[t + 1]; ri++) {
        const xunit *u = &p->u[p->rorder[ri]];
        const xblock *x = &p->xb[u->xb];
        const sts__rblock *b = &r->blocks[x->blk];
        uint64_t len = (u->hi - u->lo) * x->rowbytes, at = b->data_off + u->lo * x->rowbytes;
        MPI_File fh;
        if (u->owner != r->rank)
            continue;
        STS_CHECK(sts__reader_file(r, b->file, &fh, diag));
        rc = STS_FAULT("xchg.read", diag);
        if (rc == STS_OK)
            rc = sts__mpiio_read_at(fh, at, stage + u->stage_off, len, diag);
        if (rc != STS_OK) {
            sts__diag_prefix(diag, "%s: tensor '%s' (%llu bytes at file offset %llu)",
                             r->paths[b->file], r->tensors[x->tix].name, (unsigned long long)len,
                             (unsigned long long)at);
            goto done;
        }
        r->stats.transfers += (len + STS_MPIIO_CHUNK - 1) / STS_MPIIO_CHUNK;
        r->stats.bytes_read += len;
    }
done:
    return rc;
}

/* The types of one round, both directions. */
typedef struct rtypes {
    MPI_Datatype *st, *rt;
    int *sc, *rc, *zero;
} rtypes;

static void rtypes_free(rtypes *y, int n)
{
    for (int k = 0; y->st && y->sc && k < n; k++) {
        if (y->sc[k])
            MPI_Type_free(&y->st[k]);
        if (y->rc[k])
            MPI_Type_free(&y->rt[k]);
    }
    free(y->st);
    free(y->sc);
    memset(y, 0, sizeof *y);
}

/*
 * Copies the pieces this rank read for itself from the staging buffer into
 * its request buffers.  MPI would do the same through the self path of the
 * collective, but Open MPI packs a non-contiguous self message into a
 * temporary buffer first: two copies and a fresh allocation per round.
 */
static void copy_self(const sts_reader *r, const sts__xplan *p, const plist *l,
                      const unsigned char *stage)
{
    uint64_t lo[64], ext[64], idx[64];
    for (size_t i = l->at[r->rank]; i < l->at[r->rank + 1]; i++) {
        const piece *c = &l->v[i];
        const xunit *u = &p->u[c->unit];
        const xblock *x = &p->xb[u->xb];
        const sts__rblock *b = &r->blocks[x->blk];
        const greq *q = &p->g[c->req];
        uint32_t nd = r->tensors[x->tix].ndim, last = nd - 1;
        uint64_t es = sts_dtype_bits(r->tensors[x->tix].dtype) / 8, run;
        piece_box(r, p, c, lo, ext);
        run = ext[last] * es;
        memset(idx, 0, sizeof idx);
        for (;;) {
            /* Element offsets of this run on both sides, row-major. */
            uint64_t so = 0, mo = 0;
            for (uint32_t d = 0; d < nd; d++) {
                uint64_t ss = d == 0 ? u->hi - u->lo : b->shape[d];
                uint64_t sv = (d == 0 ? lo[0] - u->lo : lo[d]) + (d < last ? idx[d] : 0);
                uint64_t mv = b->offsets[d] + lo[d] - q->off[d] + (d < last ? idx[d] : 0);
                so = so * ss + sv;
                mo = mo * q->shape[d] + mv;
            }
            memcpy(q->buf + mo * es, stage + u->stage_off + so * es, run);
            uint32_t d = last;
            while (d > 0 && ++idx[d - 1] == ext[d - 1])
                idx[--d] = 0;
            if (d == 0)
                break;
        }
    }
}

static int rtypes_make(sts_reader *r, const sts__xplan *p, size_t t, unsigned char *stage,
                       rtypes *y, sts_diag *diag)
{
    int rc = STS_OK, n = r->nranks;
    plist ls = {NULL, NULL}, lr = {NULL, NULL};
    y->st = sts__malloc_array((size_t)n * 2, sizeof *y->st);
    y->sc = sts__calloc_array((size_t)n * 3, sizeof *y->sc);
    STS_GOTO_IF(!y->st || !y->sc, diag, STS_E_NOMEM, "out of memory");
    y->rt = y->st + n, y->rc = y->sc + n, y->zero = y->sc + 2 * n;
    for (int k = 0; k < 2 * n; k++)
        y->st[k] = MPI_BYTE;
    STS_GOTO_IF(list_pieces(r, p, t, 1, &ls) != 0 || list_pieces(r, p, t, 0, &lr) != 0, diag,
                STS_E_NOMEM, "out of memory");
    {
        uint64_t sent = 0;
        STS_CHECK(peer_types(r, p, &ls, 1, stage, y->st, y->sc, &sent, diag));
    }
    STS_CHECK(peer_types(r, p, &lr, 0, stage, y->rt, y->rc, &r->stats.bytes_received, diag));
    copy_self(r, p, &ls, stage);
done:
    free(ls.v);
    free(ls.at);
    free(lr.v);
    free(lr.at);
    return rc;
}

/*
 * Collective.  Runs every round.  rc is this rank's result so far (its direct
 * reads); it joins each round's agreement, so a failure anywhere stops every
 * rank before the next MPI_Alltoallw.  Returns this rank's result: a failed
 * last exchange is not agreed here, the caller's final agreement does it.
 */
int sts__reader_xchg_run(sts_reader *r, const sts__xplan *p, int rc, sts_diag *diag)
{
    unsigned char *stage = r->stage;
    if (rc == STS_OK && p->stage_bytes > r->stage_cap) {
        free(r->stage);
        r->stage_cap = 0;
        stage = r->stage = malloc(p->stage_bytes);
        if (!stage)
            rc = sts__fail(diag, STS_E_NOMEM, "out of memory for %llu staging bytes",
                           (unsigned long long)p->stage_bytes);
        else
            r->stage_cap = p->stage_bytes;
    }
    for (size_t t = 0; t < p->nrounds; t++) {
        rtypes y = {NULL, NULL, NULL, NULL, NULL};
        if (rc == STS_OK)
            rc = read_units(r, p, t, stage, diag);
        if (rc == STS_OK)
            rc = rtypes_make(r, p, t, stage, &y, diag);
        rc = sts__mpiio_agree(r->comm, rc, diag);
        if (rc != STS_OK) {
            rtypes_free(&y, r->nranks);
            break; /* agreed: every rank leaves at the same round */
        }
        {
            /* Addresses are absolute: both buffers are MPI_BOTTOM, displacements 0. */
            int mrc = MPI_Alltoallw(MPI_BOTTOM, y.sc, y.zero, y.st, MPI_BOTTOM, y.rc, y.zero, y.rt,
                                    r->comm);
            if (mrc != MPI_SUCCESS)
                rc = sts__mpiio_fail(diag, "MPI_Alltoallw", mrc);
        }
        /* A failed exchange is agreed at the next round's agreement or the last one. */
        rtypes_free(&y, r->nranks);
    }
    return rc;
}
