/*
 * writer_direct_agg.c - strided tensors of a direct save by exchange: an
 * aggregation built on the consolidation planner's chunks and pieces.
 *
 * A tensor with a strided block of small runs (column, 2-D, 3-D sharding) is
 * not written by its block owners.  Its rows (sts__plan_chunk_rows: the split
 * dimension for the chunk budget) are split evenly over the ranks, and each
 * rank writes its rows as chunks, each contiguous in the output file, with
 * one independent write.  The bytes of a chunk come from every block that
 * meets it: sts__plan_chunk_pieces lists them as runs, each contiguous in its
 * block's memory (data_off is 0 in a direct plan, so in_off is the offset in
 * the owner's buffer).  Every rank computes every rank's chunks and pieces
 * from the same plan, so in round k rank s knows what each rank's k-th chunk
 * needs from it, and one MPI_Alltoallw moves all of it: the send side is an
 * hindexed type over the owner's block memory (absolute addresses from
 * MPI_BOTTOM, no send buffer), the receive side one staging buffer, from
 * which sts__plan_chunk_scatter puts each run in place (as consolidation does after
 * its reads).  Memory per rank: the chunk and the staging buffer, each at
 * most half of the consolidation buffer size.
 *
 * This replaced collective writes through file views as the default after
 * measuring both (docs/benchmarks.md, "Direct save"); the views remain
 * (STSHARD_DIRECT_STRIDED=view).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpiio.h"
#include "writer_direct.h"

/* One rank's walk over the rows of the exchanged tensors of one file. */
typedef struct citer {
    const dsave *D;
    uint32_t file;
    int rank;
    size_t t, tend; /* current tensor, end of the file's tensors */
    uint64_t row, rend, rowbytes, nd;
    uint32_t d;
    int started;
} citer;

static void citer_init(citer *it, const dsave *D, uint32_t f, int rank)
{
    const sts_plan_file *F = &D->plan->files[f];
    memset(it, 0, sizeof *it);
    it->D = D;
    it->file = f;
    it->rank = rank;
    it->t = F->first_tensor;
    it->tend = F->first_tensor + F->ntensors;
}

static uint64_t tdim_of(const sts_plan_tensor *T, uint32_t k)
{
    unsigned bits = sts_dtype_bits(T->dtype);
    if (T->ndim == 0)
        return bits / 8;
    return k + 1 == T->ndim ? T->shape[k] / 8 * bits + T->shape[k] % 8 * bits / 8 : T->shape[k];
}

/* Next chunk of this rank: rows that share dims 0..d-1, at most budget bytes. */
static int citer_next(citer *it, sts_plan_chunk *c)
{
    const dsave *D = it->D;
    for (;;) {
        const sts_plan_tensor *T;
        uint64_t nrows, end, k;
        if (it->t >= it->tend)
            return 0;
        T = &D->plan->tensors[it->t];
        if (!(T->flags & STS_DIRECT_FLAG_AGG) || T->nbytes == 0) {
            it->t++;
            continue;
        }
        if (!it->started) {
            unsigned __int128 n;
            sts__plan_chunk_rows(T, D->budget, &it->d, &it->rowbytes, &nrows);
            n = nrows;
            it->row = (uint64_t)(n * (unsigned)it->rank / (unsigned)D->nranks);
            it->rend = (uint64_t)(n * (unsigned)(it->rank + 1) / (unsigned)D->nranks);
            it->nd = tdim_of(T, it->d);
            it->started = 1;
        }
        if (it->row >= it->rend) {
            it->t++;
            it->started = 0;
            continue;
        }
        k = D->budget / it->rowbytes;
        end = (it->row / it->nd + 1) * it->nd;
        if (end > it->rend)
            end = it->rend;
        if (end - it->row > k)
            end = it->row + k;
        c->tensor = it->t;
        c->file = it->file;
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

/* The state of the rounds of one file. */
typedef struct xfer {
    dsave *D;
    int np, me;
    citer *it;           /* per rank */
    sts_plan_pieces *ps; /* per rank: pieces of its current chunk */
    sts_plan_chunk *ch;  /* per rank */
    int *have;           /* per rank: a chunk this round */
    int *scount, *sdisp, *rcount, *rdisp;
    MPI_Datatype *stype, *rtype;
    int *blen;
    MPI_Aint *bdisp;
    size_t cap;
    unsigned char *win, *stage;
} xfer;

static const unsigned char *block_data(const dsave *D, size_t bi)
{
    return (const unsigned char *)D->w->blocks[D->info[bi].local].data;
}

/* Room for n hindexed entries. */
static int reserve(xfer *X, size_t n)
{
    /* Both arrays grow to the same capacity; X->cap moves only when both did. */
    size_t cap_l = X->cap, cap_d = X->cap;
    int *bl = sts__grow(X->blen, &cap_l, n, sizeof *bl, 64);
    MPI_Aint *bd;
    if (bl)
        X->blen = bl;
    bd = sts__grow(X->bdisp, &cap_d, n, sizeof *bd, 64);
    if (bd)
        X->bdisp = bd;
    if (!bl || !bd)
        return STS_E_NOMEM;
    X->cap = cap_l;
    return STS_OK;
}

/* Send type to rank r: the runs of r's chunk that lie in this rank's blocks, in piece order. */
static int send_type(xfer *X, int r, sts_diag *diag)
{
    int rc = STS_OK;
    const sts_plan_pieces *ps = &X->ps[r];
    size_t n = 0;
    X->stype[r] = MPI_BYTE;
    X->scount[r] = 0;
    if (!X->have[r] || r == X->me)
        return STS_OK;
    STS_GOTO_IF(reserve(X, ps->n) != STS_OK, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < ps->n; i++) {
        const sts_plan_piece *pc = &ps->v[i];
        if (X->D->info[pc->block].rank != X->me)
            continue;
        X->blen[n] = (int)pc->len;
        STS_MPI_CALL(diag, MPI_Get_address,
                     (block_data(X->D, pc->block) + pc->in_off, &X->bdisp[n]));
        n++;
    }
    if (n == 0)
        return STS_OK;
    STS_MPI_CALL(diag, MPI_Type_create_hindexed,
                 ((int)n, X->blen, X->bdisp, MPI_BYTE, &X->stype[r]));
    STS_MPI_CALL(diag, MPI_Type_commit, (&X->stype[r]));
    X->scount[r] = 1;
done:
    return rc;
}

/* Receive counts: the bytes of this rank's chunk held by each other rank, packed by source. */
static void recv_counts(xfer *X)
{
    uint64_t at = 0;
    for (int s = 0; s < X->np; s++)
        X->rcount[s] = 0;
    if (X->have[X->me])
        for (size_t i = 0; i < X->ps[X->me].n; i++) {
            const sts_plan_piece *pc = &X->ps[X->me].v[i];
            int s = X->D->info[pc->block].rank;
            if (s != X->me)
                X->rcount[s] += (int)pc->len;
        }
    for (int s = 0; s < X->np; s++) {
        X->rdisp[s] = (int)at;
        X->rtype[s] = MPI_BYTE;
        at += (uint64_t)X->rcount[s];
    }
}

/* Puts every run of this rank's chunk in place, then writes the chunk. */
static int assemble_write(xfer *X, MPI_File fh)
{
    const sts_plan_chunk *c = &X->ch[X->me];
    const sts_plan_pieces *ps = &X->ps[X->me];
    int *at = X->scount; /* reused: per source, bytes of the staging area consumed */
    int rc;
    for (int s = 0; s < X->np; s++)
        at[s] = X->rdisp[s];
    for (size_t i = 0; i < ps->n; i++) {
        const sts_plan_piece *pc = &ps->v[i];
        int s = X->D->info[pc->block].rank;
        const unsigned char *src =
            s == X->me ? block_data(X->D, pc->block) + pc->in_off : X->stage + at[s];
        if (s != X->me)
            at[s] += (int)pc->len;
        sts__plan_chunk_scatter(X->D->plan, c, pc, src, X->win);
    }
    rc = sts__mpiio_write_at(fh, c->out_off, X->win, c->len, X->D->diag);
    if (rc != STS_OK) {
        sts__diag_prefix(X->D->diag, "tensor '%s' (%llu bytes at file offset %llu)",
                         X->D->plan->tensors[c->tensor].name, (unsigned long long)c->len,
                         (unsigned long long)c->out_off);
        return sts__writer_core_classify_io(X->D->w, rc, c->out_off,
                                            X->D->plan->files[c->file].header_len +
                                                X->D->plan->files[c->file].data_size);
    }
    sts__writer_core_progress(X->D->w, c->len);
    X->D->written += c->len;
    return STS_OK;
}

/* This round's chunks and pieces of every rank, and the types of the exchange. */
static int prepare_round(xfer *X, int *any)
{
    int rc = STS_OK;
    *any = 0;
    for (int r = 0; r < X->np; r++) {
        X->have[r] = citer_next(&X->it[r], &X->ch[r]);
        *any |= X->have[r];
        if (X->have[r])
            STS_CHECK(sts__plan_chunk_pieces(X->D->plan, &X->ch[r], &X->ps[r], X->D->diag));
    }
    for (int r = 0; r < X->np; r++)
        STS_CHECK(send_type(X, r, X->D->diag));
    recv_counts(X);
    rc = STS_FAULT("direct.round", X->D->diag);
done:
    return rc;
}

static void free_types(xfer *X)
{
    for (int r = 0; r < X->np; r++)
        if (X->stype[r] != MPI_BYTE && X->stype[r] != MPI_DATATYPE_NULL)
            MPI_Type_free(&X->stype[r]);
}

static int xfer_init(xfer *X, dsave *D, uint32_t f)
{
    size_t n = (size_t)D->nranks;
    memset(X, 0, sizeof *X);
    X->D = D;
    X->np = D->nranks;
    X->me = D->rank;
    X->it = sts__calloc_array(n, sizeof *X->it);
    X->ps = sts__calloc_array(n, sizeof *X->ps);
    X->ch = sts__calloc_array(n, sizeof *X->ch);
    X->have = sts__calloc_array(n, sizeof *X->have);
    X->scount = sts__calloc_array(4 * n, sizeof *X->scount);
    X->stype = sts__calloc_array(2 * n, sizeof *X->stype);
    for (size_t r = 0; X->stype && r < 2 * n; r++)
        X->stype[r] = MPI_BYTE; /* before anything can fail: free_types looks at them */
    X->win = malloc(D->budget);
    X->stage = malloc(D->budget);
    if (!X->it || !X->ps || !X->ch || !X->have || !X->scount || !X->stype || !X->win || !X->stage)
        return sts__fail(D->diag, STS_E_NOMEM, "out of memory (exchange buffers)");
    X->sdisp = X->scount + n;
    X->rcount = X->scount + 2 * n;
    X->rdisp = X->scount + 3 * n;
    X->rtype = X->stype + n;
    for (size_t r = 0; r < n; r++)
        citer_init(&X->it[r], D, f, (int)r);
    return STS_OK;
}

static void xfer_free(xfer *X)
{
    for (int r = 0; X->ps && r < X->np; r++)
        sts__plan_chunk_pieces_free(&X->ps[r]);
    free(X->it);
    free(X->ps);
    free(X->ch);
    free(X->have);
    free(X->scount);
    free(X->stype);
    free(X->win);
    free(X->stage);
    free(X->blen);
    free(X->bdisp);
}

/*
 * MPI_MIN of *v over comm, waiting in sleeps between tests of a nonblocking
 * reduction: a blocking one would spin, and where ranks share cores (or the
 * node is busy) a rank waiting for the next round would take CPU time from
 * the ranks still writing their chunks (the writer's wait_quietly does the
 * same for the same reason).
 */
static int quiet_wait(MPI_Request *req)
{
    const struct timespec pause = {0, 200000}; /* 0.2 ms: small next to a chunk's write */
    int flag = 0, mrc = MPI_SUCCESS;
    while (mrc == MPI_SUCCESS && !flag) {
        mrc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        if (mrc == MPI_SUCCESS && !flag)
            nanosleep(&pause, NULL);
    }
    return mrc;
}

static int quiet_min(MPI_Comm comm, int *v)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int mrc = MPI_Iallreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MIN, comm, &req);
    return mrc == MPI_SUCCESS ? quiet_wait(&req) : mrc;
}

/* The round's exchange, waited for the same way (each test also moves the data along). */
static int quiet_alltoallw(xfer *X)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int mrc = MPI_Ialltoallw(MPI_BOTTOM, X->scount, X->sdisp, X->stype, X->stage, X->rcount,
                             X->rdisp, X->rtype, X->D->comm, &req);
    return mrc == MPI_SUCCESS ? quiet_wait(&req) : mrc;
}

int sts__writer_direct_agg_exchange(dsave *D, MPI_File fh, uint32_t f, int rc)
{
    xfer X;
    int mrc, any = 1, ok;
    if (rc == STS_OK)
        rc = xfer_init(&X, D, f);
    else
        memset(&X, 0, sizeof X);
    for (;;) {
        if (rc == STS_OK)
            rc = prepare_round(&X, &any);
        /* One int per round: a failed rank (or the end of every rank's rows) stops all. */
        ok = rc == STS_OK && any;
        mrc = quiet_min(D->comm, &ok);
        if (mrc != MPI_SUCCESS && rc == STS_OK)
            rc = sts__mpiio_fail(D->diag, "MPI_Iallreduce", mrc);
        if (!ok || mrc != MPI_SUCCESS)
            break;
        for (int r = 0; r < X.np; r++)
            X.sdisp[r] = 0;
        mrc = quiet_alltoallw(&X);
        free_types(&X);
        if (mrc != MPI_SUCCESS)
            rc = sts__mpiio_fail(D->diag, "MPI_Ialltoallw", mrc);
        else if (X.have[X.me])
            rc = assemble_write(&X, fh);
    }
    if (X.stype)
        free_types(&X);
    xfer_free(&X);
    return rc;
}
