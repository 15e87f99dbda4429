/*
 * writer_direct_io.c - the data phase of a direct save: every rank writes the
 * blocks it holds straight to their places in the consolidated files.
 *
 * Geometry: as in the planner, a tensor is seen in a "byte view" (the last
 * dimension counts bytes), so every dtype has 1-byte elements and sub-byte
 * dtypes work when blocks start and end on bytes (the planner checks that).
 * In the output a block is a set of equal runs: the run covers the block's
 * extent in the last dimension j where it differs from the tensor, times the
 * full dimensions after j; the dimensions before j (those where the block
 * has more than one index) repeat it at fixed strides.
 *
 * Transfers, per output file:
 *  - a block that is one run (row sharding, whole tensors) is one
 *    independent write (small neighbours are staged into one write);
 *  - a strided block whose runs are large is one independent write per run;
 *  - a tensor with a strided block of small runs (column, 2-D, 3-D sharding)
 *    goes through the exchange of writer_direct_agg.c (the default), or, with
 *    STSHARD_DIRECT_STRIDED=view, each such block is written through a file
 *    view: an hvector type per strided dimension over a
 *    contiguous run, set with MPI_File_set_view at the block's first byte,
 *    then MPI_File_write_at_all of the block's bytes.  Both calls are
 *    collective, so every rank makes the same number of rounds per file (the
 *    maximum, agreed with MPI_Allreduce); a rank with nothing left joins with
 *    a plain byte view and a count of 0.  MPI-IO's two-phase collective
 *    buffering then aggregates the interleaved rows of all ranks into large
 *    contiguous writes, so no rank ever issues one small write per row.
 * Independent writes come first and the collective rounds after: the first
 * collective call synchronises the ranks, so an aggregator that reads part
 * of the file to fill holes (ROMIO's read-modify-write) never reads a region
 * that an independent write is still filling.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "mpiio.h"
#include "writer_direct.h"

typedef struct dgeom {
    uint32_t n; /* strided dimensions, outer to inner */
    uint64_t count[STS_PLAN_MAX_NDIM], stride[STS_PLAN_MAX_NDIM];
    uint64_t run;    /* bytes per run */
    uint64_t start;  /* absolute offset of the first byte */
    uint64_t nbytes; /* bytes of the block */
} dgeom;

/* The runs of the block at offsets with shape of tensor t in its output file (byte view). */
static void geometry(const sts_plan_tensor *t, const uint64_t *offsets, const uint64_t *shape,
                     dgeom *g)
{
    uint64_t G[STS_PLAN_MAX_NDIM], S[STS_PLAN_MAX_NDIM], O[STS_PLAN_MAX_NDIM];
    uint64_t st[STS_PLAN_MAX_NDIM];
    uint32_t nd = t->ndim, last;
    unsigned bits = sts_dtype_bits(t->dtype);
    long j = -1;
    memset(g, 0, sizeof *g);
    g->start = t->out_off;
    if (nd == 0) { /* a scalar: one element, one run */
        g->run = g->nbytes = t->nbytes;
        return;
    }
    last = nd - 1;
    for (uint32_t k = 0; k < nd; k++) {
        G[k] = t->shape[k];
        S[k] = shape[k];
        O[k] = offsets[k];
    }
    /* Whole bytes: the planner rejected sub-byte blocks off byte boundaries. */
    G[last] = G[last] * bits / 8;
    S[last] = S[last] * bits / 8;
    O[last] = O[last] * bits / 8;
    st[last] = 1;
    for (uint32_t k = last; k > 0; k--)
        st[k - 1] = st[k] * G[k];
    g->nbytes = 1;
    for (uint32_t k = 0; k < nd; k++) {
        g->start += O[k] * st[k];
        g->nbytes *= S[k];
        if (S[k] != G[k])
            j = (long)k;
    }
    if (j < 0 || g->nbytes == 0) {
        g->run = g->nbytes;
        return;
    }
    g->run = S[j] * st[j];
    for (long k = 0; k < j; k++) {
        if (S[k] == 1)
            continue; /* a single index only moves the start */
        g->count[g->n] = S[k];
        g->stride[g->n++] = st[k];
    }
}

static sts__dkind classify(const dgeom *g)
{
    if (g->n == 0)
        return STS_DIRECT_CONTIG;
    if (g->run >= STS_DIRECT_RUN_MIN)
        return STS_DIRECT_RUNS;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->count[i] > INT_MAX)
            return STS_DIRECT_RUNS; /* beyond an int count: slow, but correct */
    return STS_DIRECT_VIEW;
}

static void piece_geometry(const dsave *D, const sts__dpiece *pc, dgeom *g)
{
    const uint64_t *dims = pc->src->dims; /* global shape, offsets, shape */
    geometry(&D->plan->tensors[pc->tensor], dims + pc->src->ndim, dims + 2 * pc->src->ndim, g);
}

static int cmp_piece(const void *x, const void *y)
{
    const sts__dpiece *a = x, *b = y;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return a->start < b->start ? -1 : a->start > b->start;
}

uint32_t sts__writer_direct_io_flags(const void *ctx, const sts_plan_summary *s,
                                     const sts_plan_block *blocks, const size_t *order)
{
    const dsave *D = ctx;
    sts_plan_tensor t;
    if (!D->exchange)
        return 0;
    memset(&t, 0, sizeof t);
    t.dtype = s->dtype;
    t.ndim = s->ndim;
    t.shape = s->shape;
    t.nbytes = s->nbytes;
    for (size_t k = 0; k < s->nblocks; k++) {
        const sts_plan_block *b = &blocks[order[s->first_block + k]];
        dgeom g;
        geometry(&t, b->offsets, b->shape, &g);
        if (classify(&g) == STS_DIRECT_VIEW)
            return STS_DIRECT_FLAG_AGG;
    }
    return 0;
}

static const char *tensor_name(const void *ctx, size_t i, size_t *len)
{
    const sts_plan *P = ctx;
    *len = P->tensors[i].name_len;
    return P->tensors[i].name;
}

/* One piece per record the planner kept; tensors the mapping dropped have no plan entry. */
static int list_pieces(dsave *D, const sts__hashtab *names)
{
    const sts_plan *P = D->plan;
    for (size_t i = 0; i < D->nrecs; i++) {
        const sts__writer_block *wb = &D->w->blocks[D->rec_local[i]];
        sts__dpiece *pc = &D->pieces[D->npieces];
        long t = D->sv.kept[i] ? sts__hashtab_find(names, wb->name, strlen(wb->name)) : -1;
        dgeom g;
        if (t < 0)
            continue;
        pc->src = wb;
        pc->tensor = (size_t)t;
        piece_geometry(D, pc, &g);
        if (g.nbytes != wb->nbytes)
            return sts__fail(D->diag, STS_E_INTERNAL,
                             "tensor '%s': planned %llu bytes for a block of %llu", wb->name,
                             (unsigned long long)g.nbytes, (unsigned long long)wb->nbytes);
        pc->file = P->tensors[t].file;
        pc->kind = P->tensors[t].flags & STS_DIRECT_FLAG_AGG ? STS_DIRECT_AGG : classify(&g);
        pc->data = (const unsigned char *)wb->data;
        pc->start = g.start;
        pc->nbytes = g.nbytes;
        D->npieces++;
    }
    return STS_OK;
}

int sts__writer_direct_io_pieces(dsave *D)
{
    const sts_plan *P = D->plan;
    sts__hashtab names;
    int rc = STS_OK;
    sts__hashtab_init(&names, tensor_name, P);
    D->pieces = sts__calloc_array(D->nrecs ? D->nrecs : 1, sizeof *D->pieces);
    STS_GOTO_IF(!D->pieces, D->diag, STS_E_NOMEM, "out of memory");
    rc = sts__hashtab_reserve(&names, P->ntensors);
    for (size_t t = 0; rc == STS_OK && t < P->ntensors; t++) {
        const sts_plan_tensor *T = &P->tensors[t];
        rc = sts__hashtab_insert(&names, t, sts__hashtab_hash(T->name, T->name_len), NULL);
        rc = rc == 1 ? sts__fail(D->diag, STS_E_INTERNAL, "tensor '%s' twice in the plan", T->name)
                     : rc;
    }
    STS_GOTO_IF(rc == STS_E_NOMEM, D->diag, rc, "out of memory");
    STS_CHECK(rc);
    STS_CHECK(list_pieces(D, &names));
    if (D->npieces > 1)
        qsort(D->pieces, D->npieces, sizeof *D->pieces, cmp_piece);
done:
    sts__hashtab_free(&names);
    return rc;
}

/* ---- independent writes ------------------------------------------------------ */

/* Writes the runs of a strided block one by one, in file order (an odometer over dims). */
static int write_runs(sts__writer_stager *s, const dgeom *g, const unsigned char *data)
{
    int rc = STS_OK;
    uint64_t idx[STS_PLAN_MAX_NDIM], off = g->start, nruns = g->nbytes / g->run;
    memset(idx, 0, sizeof idx);
    for (uint64_t r = 0; r < nruns; r++) {
        STS_CHECK(sts__writer_core_stage_put(s, off, data + r * g->run, g->run));
        for (uint32_t i = g->n; i-- > 0;) {
            off += g->stride[i];
            if (++idx[i] < g->count[i])
                break;
            off -= g->count[i] * g->stride[i];
            idx[i] = 0;
        }
    }
done:
    return rc;
}

static int write_piece(dsave *D, sts__writer_stager *s, const sts__dpiece *pc)
{
    dgeom g;
    if (pc->kind == STS_DIRECT_CONTIG)
        return sts__writer_core_stage_put(s, pc->start, pc->data, pc->nbytes);
    piece_geometry(D, pc, &g);
    return write_runs(s, &g, pc->data);
}

static uint64_t file_end(const dsave *D, uint32_t f)
{
    return D->plan->files[f].header_len + D->plan->files[f].data_size;
}

/* Rank 0's header, then this rank's pieces [lo, hi) of file f that are not views. */
static int write_independent(dsave *D, sts__writer_stager *s, uint32_t f, size_t lo, size_t hi)
{
    int rc = STS_OK;
    const sts_plan_file *F = &D->plan->files[f];
    s->len = 0;
    if (D->rank == 0) {
        /* Encoded now, not at layout: every header at once would weigh on rank 0's peak. */
        void *hdr = NULL;
        rc = sts__plan_layout_header(D->plan, f, &D->po, &hdr, D->diag);
        if (rc == STS_OK) {
            rc = sts__writer_core_stage_put(s, 0, hdr, F->header_len);
            rc = sts__writer_core_classify_io(D->w, rc, 0, file_end(D, f));
        }
        sts_free(hdr);
        if (rc != STS_OK)
            return rc;
    }
    for (size_t i = lo; i < hi; i++) {
        const sts__dpiece *pc = &D->pieces[i];
        if (pc->kind == STS_DIRECT_VIEW || pc->kind == STS_DIRECT_AGG)
            continue;
        rc = write_piece(D, s, pc);
        if (rc != STS_OK) {
            sts__diag_prefix(D->diag, "tensor '%s' (%llu bytes at file offset %llu)",
                             D->plan->tensors[pc->tensor].name, (unsigned long long)pc->nbytes,
                             (unsigned long long)pc->start);
            return sts__writer_core_classify_io(D->w, rc, pc->start, file_end(D, f));
        }
        sts__writer_core_progress(D->w, pc->nbytes);
        D->written += pc->nbytes;
    }
    rc = sts__writer_core_stage_flush(s);
    return sts__writer_core_classify_io(D->w, rc, s->off, file_end(D, f));
}

/* ---- collective rounds --------------------------------------------------------- */

/* The file type of a strided block: hvectors (outer dims) over one contiguous run. */
static int view_type(const dgeom *g, MPI_Datatype *out, sts_diag *diag)
{
    int rc = STS_OK;
    MPI_Datatype t = MPI_DATATYPE_NULL, v;
    STS_MPI_CALL(diag, MPI_Type_contiguous, ((int)g->run, MPI_BYTE, &t));
    for (uint32_t i = g->n; i-- > 0;) {
        STS_MPI_CALL(diag, MPI_Type_create_hvector,
                     ((int)g->count[i], 1, (MPI_Aint)g->stride[i], t, &v));
        MPI_Type_free(&t);
        t = v;
    }
    STS_MPI_CALL(diag, MPI_Type_commit, (&t));
    *out = t;
    t = MPI_DATATYPE_NULL;
done:
    if (t != MPI_DATATYPE_NULL)
        MPI_Type_free(&t);
    return rc;
}

/* One round cursor: the view piece being written and how far. */
typedef struct cursor {
    size_t at, end; /* pieces [at, end) of the file, views among them */
    uint64_t sub;   /* bytes of pieces[at] already written */
    MPI_Datatype type;
} cursor;

static const sts__dpiece *next_view(const dsave *D, cursor *c)
{
    while (c->at < c->end && D->pieces[c->at].kind != STS_DIRECT_VIEW)
        c->at++;
    return c->at < c->end ? &D->pieces[c->at] : NULL;
}

/*
 * One collective round: this rank's next slice of at most D->round bytes, or an empty write when it
 * has none left or has failed (it must still make both collective calls).
 */
static int round_once(dsave *D, MPI_File fh, cursor *c, int rc)
{
    static const char none = 0;
    const sts__dpiece *pc;
    if (rc == STS_OK)
        rc = STS_FAULT("direct.round", D->diag);
    pc = rc == STS_OK ? next_view(D, c) : NULL;
    MPI_Datatype ftype = MPI_BYTE;
    MPI_Offset disp = 0;
    uint64_t n = 0;
    MPI_Status st;
    int mrc, got = 0;
    if (pc && c->type == MPI_DATATYPE_NULL) {
        dgeom g;
        piece_geometry(D, pc, &g);
        rc = view_type(&g, &c->type, D->diag);
        if (rc != STS_OK)
            pc = NULL;
    }
    if (pc) {
        ftype = c->type;
        disp = (MPI_Offset)pc->start;
        n = pc->nbytes - c->sub < D->round ? pc->nbytes - c->sub : D->round;
    }
    mrc = MPI_File_set_view(fh, disp, MPI_BYTE, ftype, "native", MPI_INFO_NULL);
    if (mrc != MPI_SUCCESS) {
        if (rc == STS_OK)
            rc = sts__mpiio_fail(D->diag, "MPI_File_set_view", mrc);
        n = 0; /* a failed view must not receive data */
    }
    /* Offsets are counted in bytes of the view's visible data, from the block's first byte. */
    mrc =
        MPI_File_write_at_all(fh, (MPI_Offset)c->sub, n ? (const void *)(pc->data + c->sub) : &none,
                              (int)n, MPI_BYTE, &st);
    if (mrc != MPI_SUCCESS && rc == STS_OK)
        rc = sts__mpiio_fail(D->diag, "MPI_File_write_at_all", mrc);
    else if (rc == STS_OK && n > 0 &&
             (MPI_Get_count(&st, MPI_BYTE, &got) != MPI_SUCCESS || (uint64_t)got != n))
        rc = sts__fail(D->diag, STS_E_IO, "short collective write: %d of %llu bytes", got,
                       (unsigned long long)n);
    if (rc != STS_OK && pc) {
        sts__diag_prefix(D->diag, "tensor '%s' (%llu bytes from file offset %llu)",
                         D->plan->tensors[pc->tensor].name, (unsigned long long)pc->nbytes,
                         (unsigned long long)pc->start);
        return sts__writer_core_classify_io(D->w, rc, pc->start, file_end(D, pc->file));
    }
    if (pc && (c->sub += n) == pc->nbytes) {
        sts__writer_core_progress(D->w, pc->nbytes);
        D->written += pc->nbytes;
        MPI_Type_free(&c->type);
        c->type = MPI_DATATYPE_NULL;
        c->sub = 0;
        c->at++;
    }
    return rc;
}

/* ---- one file, all files ------------------------------------------------------------ */

static int write_file(dsave *D, sts__writer_stager *s, uint32_t f, size_t lo, size_t hi)
{
    int rc, mrc;
    MPI_File fh = MPI_FILE_NULL;
    cursor c = {lo, hi, 0, MPI_DATATYPE_NULL};
    rc = sts__mpiio_open_all(D->comm, D->out.tmp_paths[f], 1, MPI_INFO_NULL, &fh, D->diag);
    if (rc != STS_OK)
        return rc; /* agreed by the open */
    s->fh = fh;
    rc = write_independent(D, s, f, lo, hi);
    if (D->exchange)
        rc = sts__writer_direct_agg_exchange(D, fh, f, rc);
    for (uint64_t r = 0; r < D->rounds[f]; r++)
        rc = round_once(D, fh, &c, rc);
    if (c.type != MPI_DATATYPE_NULL)
        MPI_Type_free(&c.type);
    /* MPI_File_sync is collective: every rank calls it, each syncing its own writes. */
    if (D->co.fsync && (mrc = MPI_File_sync(fh)) != MPI_SUCCESS && rc == STS_OK)
        rc = sts__mpiio_fail(D->diag, "MPI_File_sync", mrc);
    mrc = MPI_File_close(&fh);
    if (mrc != MPI_SUCCESS && rc == STS_OK)
        rc = sts__mpiio_fail(D->diag, "MPI_File_close", mrc);
    if (rc != STS_OK && !strstr(D->diag->message, D->out.tmp_paths[f]))
        sts__diag_prefix(D->diag, "%s", D->out.tmp_paths[f]);
    /* After the collective close and this agreement every byte is in the file. */
    return sts__mpiio_agree(D->comm, rc, D->diag);
}

/*
 * STSHARD_DIRECT_ROUND (bytes, at least 4 KiB) replaces STS_DIRECT_ROUND: the
 * tests use it to make one block span several rounds.
 */
static uint64_t round_bytes(void)
{
    const char *env = getenv("STSHARD_DIRECT_ROUND");
    char *end = NULL;
    unsigned long long v = env ? strtoull(env, &end, 10) : 0;
    return env && end && *end == '\0' && v >= 4096 && v <= STS_DIRECT_ROUND ? (uint64_t)v
                                                                            : STS_DIRECT_ROUND;
}

int sts__writer_direct_io_settings(dsave *D)
{
    int rc = STS_OK;
    /* mpirun passes a variable to other hosts only with -x, so each rank's environment may
     * differ; the exchange mode picks which collectives run, so rank 0's word is law. */
    uint64_t v[2] = {1, STS_DIRECT_ROUND};
    if (D->rank == 0) {
        const char *env = getenv("STSHARD_DIRECT_STRIDED");
        v[0] = !(env && strcmp(env, "view") == 0);
        v[1] = round_bytes();
    }
    STS_MPI_CALL(D->diag, MPI_Bcast, (v, 2, MPI_UINT64_T, 0, D->comm));
    D->exchange = (int)v[0];
    D->round = v[1];
done:
    return rc;
}

/* This rank's rounds per file, then the maximum over all ranks. */
static int agree_rounds(dsave *D)
{
    int rc = STS_OK;
    D->budget = (D->co.buffer_size ? D->co.buffer_size : STS_CONS_DEFAULT_BUFFER) / 2;
    if (D->budget < 8)
        D->budget = 8;
    if (D->budget > STS_MPIIO_CHUNK) /* counts and displacements of the exchange are ints */
        D->budget = STS_MPIIO_CHUNK;
    size_t nf = D->plan->nfiles;
    uint64_t *mine = sts__calloc_array(nf, sizeof *mine);
    D->rounds = sts__calloc_array(nf, sizeof *D->rounds);
    rc = mine && D->rounds ? STS_OK : sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    STS_GOTO_IF(nf > INT_MAX, D->diag, STS_E_UNSUPPORTED, "%zu output files", nf);
    STS_CHECK(sts__mpiio_agree(D->comm, rc, D->diag));
    for (size_t i = 0; i < D->npieces; i++)
        if (D->pieces[i].kind == STS_DIRECT_VIEW)
            mine[D->pieces[i].file] += (D->pieces[i].nbytes + D->round - 1) / D->round;
    STS_MPI_CALL(D->diag, MPI_Allreduce,
                 (mine, D->rounds, (int)nf, MPI_UINT64_T, MPI_MAX, D->comm));
done:
    free(mine);
    return rc;
}

/* The staging buffer holds rank 0's headers and the small contiguous pieces. */
static int stager_init(dsave *D, sts__writer_stager *s)
{
    uint64_t small = 64 * 1024;
    memset(s, 0, sizeof *s);
    s->diag = D->diag;
    for (size_t i = 0; i < D->npieces; i++)
        if (D->pieces[i].kind == STS_DIRECT_CONTIG && D->pieces[i].nbytes < STS_WRITER_STAGE_DIRECT)
            small += D->pieces[i].nbytes;
    s->cap = small < STS_WRITER_STAGE_CAP ? small : STS_WRITER_STAGE_CAP;
    s->buf = malloc(s->cap);
    return s->buf ? STS_OK : sts__fail(D->diag, STS_E_NOMEM, "out of memory (staging buffer)");
}

int sts__writer_direct_io_write(dsave *D)
{
    int rc;
    sts__writer_stager s;
    STS_CHECK(agree_rounds(D));
    rc = sts__mpiio_agree(D->comm, stager_init(D, &s), D->diag);
    for (size_t f = 0, lo = 0, hi; rc == STS_OK && f < D->plan->nfiles; f++, lo = hi) {
        for (hi = lo; hi < D->npieces && D->pieces[hi].file == f; hi++)
            ;
        rc = write_file(D, &s, (uint32_t)f, lo, hi);
    }
    free(s.buf);
    D->w->bytes_local = D->written;
done:
    return rc;
}
