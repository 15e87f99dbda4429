/*
 * reader_io.c - offset reads: requests are checked against the tensor table,
 * intersected with the stored blocks, and each intersection box is read with
 * MPI-IO, touching only its own bytes.
 *
 * A box is first normalised: trailing dimensions that the box spans fully on
 * both sides (file block and request buffer) fold into a bigger element, and
 * inner full dimensions merge with their outer neighbour.  What remains is a
 * set of "runs" (contiguous on both sides) of e[d-1] elements.  Runs are read
 * one MPI_File_read_at each, except when they are small and one side is
 *  contiguous over several of them:
 *  - file contiguous, memory strided (e.g. a row block gathered from column
 *    blocks): one read of the file range into a bounce buffer, then memcpy
 *    of each run to its place.  A subarray memory type would do the same in
 *    one call, but OMPIO unpacks it element run by element run: measured at
 *    half the speed of the bounce copy for 1 KiB runs;
 *  - file strided (a column block): exact runs by default.  A subarray file
 *    view would do it in one call, but Open MPI's OMPIO ignores
 *    romio_ds_read and sieves (reads the holes too) when the gaps are under
 *    4 KiB: measured 4x the bytes for a quarter-width column block.  Views
 *    are used only when the caller asks ("stshard_strided_reads" = "view").
 * Open MPI 4.1 has int counts only, so one call moves at most
 * STS_MPIIO_CHUNK bytes and every datatype extent must fit an int.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mpiio.h"
#include "reader.h"

/* Runs shorter than this are worth combining into one MPI call (the per-call cost of a
 * small pread is comparable to copying a few KiB). */
#define FUSE_RUN_BYTES ((uint64_t)16 << 10)
/* The bounce buffer for file-contiguous, memory-strided ranges. */
#define BOUNCE_BYTES ((uint64_t)4 << 20)
/* Close cached file handles after a read call once this many are open. */
#define MAX_OPEN_FILES 64

/* A normalised box: d dimensions of E-byte elements; strides are in elements. */
typedef struct nbox {
    uint32_t d;
    uint64_t E;
    uint64_t *e, *q, *fs, *s, *ms, *qstr, *sstr, *idx;
} nbox;

static int full_both(const nbox *b, uint32_t j)
{
    return b->e[j] == b->q[j] && b->e[j] == b->s[j];
}

/* Removes dimension j by merging it into j - 1 (j is spanned fully on both sides). */
static void merge_down(nbox *b, uint32_t j)
{
    b->fs[j - 1] = b->fs[j - 1] * b->q[j] + b->fs[j];
    b->ms[j - 1] = b->ms[j - 1] * b->s[j] + b->ms[j];
    b->q[j - 1] *= b->q[j];
    b->s[j - 1] *= b->s[j];
    b->e[j - 1] *= b->e[j];
    for (uint32_t k = j; k + 1 < b->d; k++) {
        b->e[k] = b->e[k + 1];
        b->q[k] = b->q[k + 1];
        b->s[k] = b->s[k + 1];
        b->fs[k] = b->fs[k + 1];
        b->ms[k] = b->ms[k + 1];
    }
    b->d--;
}

static int normalise(const sts__box *in, nbox *b)
{
    uint32_t n = in->ndim;
    uint64_t *mem = sts__malloc_array((size_t)n * 8 + 1, sizeof *mem);
    if (!mem)
        return STS_E_NOMEM;
    b->e = mem, b->q = mem + n, b->fs = mem + 2 * n, b->s = mem + 3 * n;
    b->ms = mem + 4 * n, b->qstr = mem + 5 * n, b->sstr = mem + 6 * n, b->idx = mem + 7 * n;
    memcpy(b->e, in->ext, n * sizeof *mem);
    memcpy(b->q, in->fshape, n * sizeof *mem);
    memcpy(b->fs, in->fstart, n * sizeof *mem);
    memcpy(b->s, in->mshape, n * sizeof *mem);
    memcpy(b->ms, in->mstart, n * sizeof *mem);
    b->d = n;
    b->E = in->esize;
    while (b->d > 0 && full_both(b, b->d - 1)) {
        b->E *= b->e[b->d - 1];
        b->d--;
    }
    for (uint32_t j = b->d > 0 ? b->d - 1 : 0; j >= 1; j--) {
        if (full_both(b, j))
            merge_down(b, j);
    }
    for (uint32_t j = b->d; j-- > 0;) {
        b->qstr[j] = j + 1 < b->d ? b->qstr[j + 1] * b->q[j + 1] : 1;
        b->sstr[j] = j + 1 < b->d ? b->sstr[j + 1] * b->s[j + 1] : 1;
    }
    return STS_OK;
}

/* Smallest level k such that the box over dims [k, d) is one contiguous range of the array. */
static uint32_t contig_level(const nbox *b, const uint64_t *shape)
{
    uint32_t k = b->d - 1;
    while (k > 0 && b->e[k] == shape[k])
        k--;
    return k;
}

/* Bytes of one row of level L (all dims after L), or 0 when the datatypes would not fit ints. */
static uint64_t row_bytes_if_fits(const nbox *b, uint32_t L)
{
    uint64_t rb = b->E;
    if (b->E > INT_MAX)
        return 0;
    for (uint32_t j = L + 1; j < b->d; j++) {
        if (b->q[j] > INT_MAX || b->s[j] > INT_MAX)
            return 0;
        rb *= b->e[j];
    }
    return rb <= STS_MPIIO_CHUNK ? rb : 0;
}

/* Subarray type for rows [0, g) of level L of an array (shape, start) of E-byte elements. */
static int make_type(const nbox *b, uint32_t L, uint64_t g, const uint64_t *shape,
                     const uint64_t *start, MPI_Datatype *out, sts_diag *diag)
{
    int rc = STS_OK, m = (int)(b->d - L);
    int *sz = sts__malloc_array((size_t)m * 3, sizeof *sz);
    MPI_Datatype elem = MPI_DATATYPE_NULL;
    *out = MPI_DATATYPE_NULL;
    STS_GOTO_IF(!sz, diag, STS_E_NOMEM, "out of memory");
    for (int i = 0; i < m; i++) {
        sz[i] = (int)(i == 0 ? g : shape[L + (uint32_t)i]);
        sz[m + i] = (int)(i == 0 ? g : b->e[L + (uint32_t)i]);
        sz[2 * m + i] = (int)(i == 0 ? 0 : start[L + (uint32_t)i]);
    }
    STS_MPI_CALL(diag, MPI_Type_contiguous, ((int)b->E, MPI_BYTE, &elem));
    STS_MPI_CALL(diag, MPI_Type_create_subarray,
                 (m, sz, sz + m, sz + 2 * m, MPI_ORDER_C, elem, out));
    STS_MPI_CALL(diag, MPI_Type_commit, (out));
done:
    if (elem != MPI_DATATYPE_NULL)
        MPI_Type_free(&elem);
    if (rc != STS_OK && *out != MPI_DATATYPE_NULL)
        MPI_Type_free(out);
    free(sz);
    return rc;
}

/* The level at which units are transferred, and whether each side needs a datatype. */
typedef struct xplan {
    uint32_t L;
    uint64_t g;     /* rows of level L per call */
    int file_typed; /* file side strided inside a unit: subarray view */
    int mem_typed;  /* memory side strided inside a unit: subarray memory type */
    int bounce;     /* file side contiguous, memory strided: bounce buffer + memcpy */
} xplan;

static void choose_level(const nbox *b, int view_mode, xplan *p)
{
    uint32_t kf = contig_level(b, b->q), km = contig_level(b, b->s), last = b->d - 1;
    uint64_t run = b->e[last] * b->E;
    /* Default: one call per run (contiguous on both sides), g = the whole run. */
    p->L = last;
    p->g = b->e[last];
    p->bounce = 0;
    if (view_mode) {
        /* Both sides through datatypes from the outermost level that fits ints. */
        for (uint32_t L = 0; L < last; L++) {
            uint64_t rb = row_bytes_if_fits(b, L);
            if (rb == 0)
                continue;
            p->L = L;
            p->g = STS_MPIIO_CHUNK / rb;
            p->g = p->g < b->e[L] ? p->g : b->e[L];
            p->g = p->g < INT_MAX ? p->g : INT_MAX;
            break;
        }
    } else if (run < FUSE_RUN_BYTES && kf < last) {
        /* Small runs, contiguous in the file over levels kf..last: bounce them. */
        for (uint32_t L = kf; L < last; L++) {
            uint64_t rb = b->E;
            for (uint32_t j = L + 1; j < b->d; j++)
                rb *= b->e[j];
            if (rb > BOUNCE_BYTES)
                continue;
            p->L = L;
            p->g = BOUNCE_BYTES / rb < b->e[L] ? BOUNCE_BYTES / rb : b->e[L];
            p->bounce = 1;
            break;
        }
    }
    p->file_typed = p->L < kf;
    p->mem_typed = p->L < km && !p->bounce;
}

/*
 * Copies n rows of level L from the bounce buffer (dense: the file side is
 * contiguous there) to their places in memory, one run at a time.
 */
static void scatter(const nbox *b, const xplan *p, uint64_t mo, uint64_t r, uint64_t n,
                    const unsigned char *src, unsigned char *mbase)
{
    uint32_t last = b->d - 1;
    uint64_t run = b->e[last] * b->E;
    uint64_t *jdx = b->idx + p->L; /* the odometer over dims [L, last) */
    memset(jdx, 0, (last - p->L) * sizeof *jdx);
    for (;;) {
        uint64_t m = mo + b->ms[last];
        for (uint32_t j = p->L; j < last; j++)
            m += (b->ms[j] + jdx[j - p->L] + (j == p->L ? r : 0)) * b->sstr[j];
        memcpy(mbase + m * b->E, src, run);
        src += run;
        uint32_t j = last;
        while (j > p->L && ++jdx[j - 1 - p->L] == (j - 1 == p->L ? n : b->e[j - 1]))
            jdx[--j - p->L] = 0;
        if (j == p->L)
            break;
    }
}

/* One MPI-IO call (or a chunked series for a long contiguous run). */
static int xfer(MPI_File fh, uint64_t fpos, MPI_Datatype ft, unsigned char *mptr, MPI_Datatype mt,
                uint64_t bytes, MPI_Info info, sts_read_stats *st, sts_diag *diag)
{
    int rc = STS_OK, got = 0;
    MPI_Status status;
    if (ft == MPI_DATATYPE_NULL && mt == MPI_DATATYPE_NULL) {
        st->transfers += (bytes + STS_MPIIO_CHUNK - 1) / STS_MPIIO_CHUNK;
        st->bytes_read += bytes;
        return sts__mpiio_read_at(fh, fpos, mptr, bytes, diag);
    }
    if (ft != MPI_DATATYPE_NULL) {
        /* The view starts at the unit's first row; offset 0 below is relative to it. */
        STS_MPI_CALL(diag, MPI_File_set_view, (fh, (MPI_Offset)fpos, MPI_BYTE, ft, "native", info));
        fpos = 0;
    }
    if (mt != MPI_DATATYPE_NULL)
        STS_MPI_CALL(diag, MPI_File_read_at, (fh, (MPI_Offset)fpos, mptr, 1, mt, &status));
    else
        STS_MPI_CALL(diag, MPI_File_read_at,
                     (fh, (MPI_Offset)fpos, mptr, (int)bytes, MPI_BYTE, &status));
    /* Basic elements are bytes for both kinds of memory type. */
    STS_MPI_CALL(diag, MPI_Get_elements, (&status, mt != MPI_DATATYPE_NULL ? mt : MPI_BYTE, &got));
    STS_GOTO_IF(got < 0 || (uint64_t)got != bytes, diag, STS_E_IO, "short read: %d of %llu bytes",
                got, (unsigned long long)bytes);
    st->transfers++;
    st->bytes_read += bytes;
done:
    return rc;
}

/* Runs every unit of the plan: an odometer over the dims above L, then row groups of L. */
static int run_units(sts_reader *rd, MPI_File fh, const sts__box *in, const nbox *b, const xplan *p,
                     MPI_Datatype *ft, MPI_Datatype *mt, sts_diag *diag)
{
    int rc = STS_OK;
    uint64_t row = b->E;
    for (uint32_t j = p->L + 1; j < b->d; j++)
        row *= b->e[j];
    memset(b->idx, 0, p->L * sizeof *b->idx);
    for (;;) {
        uint64_t fo = 0, mo = 0;
        for (uint32_t j = 0; j < p->L; j++) {
            fo += (b->fs[j] + b->idx[j]) * b->qstr[j];
            mo += (b->ms[j] + b->idx[j]) * b->sstr[j];
        }
        for (uint64_t r = 0; r < b->e[p->L]; r += p->g) {
            uint64_t n = b->e[p->L] - r < p->g ? b->e[p->L] - r : p->g;
            int k = n == p->g ? 0 : 1; /* type [0] is for full groups, [1] for the rest */
            uint64_t f = fo + (b->fs[p->L] + r) * b->qstr[p->L];
            uint64_t m = mo + (b->ms[p->L] + r) * b->sstr[p->L];
            if (p->bounce) {
                STS_CHECK(xfer(fh, in->fbase + f * b->E, MPI_DATATYPE_NULL, rd->bounce,
                               MPI_DATATYPE_NULL, n * row, rd->info, &rd->stats, diag));
                scatter(b, p, mo, r, n, rd->bounce, in->mbase);
                continue;
            }
            STS_CHECK(xfer(fh, in->fbase + f * b->E, ft[k], in->mbase + m * b->E, mt[k], n * row,
                           rd->info, &rd->stats, diag));
        }
        /* Next index over dims [0, L), last dimension fastest. */
        uint32_t j = p->L;
        while (j > 0 && ++b->idx[j - 1] == b->e[j - 1])
            b->idx[--j] = 0;
        if (j == 0)
            break;
    }
done:
    return rc;
}

int sts__reader_io_box(sts_reader *rd, MPI_File fh, const sts__box *in, sts_diag *diag)
{
    int rc = STS_OK;
    nbox b = {0};
    xplan p;
    MPI_Datatype ft[2] = {MPI_DATATYPE_NULL, MPI_DATATYPE_NULL};
    MPI_Datatype mt[2] = {MPI_DATATYPE_NULL, MPI_DATATYPE_NULL};
    for (uint32_t j = 0; j < in->ndim; j++) {
        if (in->ext[j] == 0)
            return STS_OK;
    }
    STS_GOTO_IF(normalise(in, &b) != STS_OK, diag, STS_E_NOMEM, "out of memory");
    if (b.d == 0) {
        /* The whole box is one contiguous range on both sides. */
        STS_CHECK(xfer(fh, in->fbase, MPI_DATATYPE_NULL, in->mbase, MPI_DATATYPE_NULL, b.E,
                       rd->info, &rd->stats, diag));
        goto done;
    }
    choose_level(&b, rd->view_mode, &p);
    if (p.bounce && !rd->bounce) {
        rd->bounce = malloc(BOUNCE_BYTES);
        STS_GOTO_IF(!rd->bounce, diag, STS_E_NOMEM, "out of memory");
    }
    for (int k = 0; k < 2; k++) {
        uint64_t g = k == 0 ? p.g : b.e[p.L] % p.g;
        if (g == 0)
            continue;
        if (p.file_typed)
            STS_CHECK(make_type(&b, p.L, g, b.q, b.fs, &ft[k], diag));
        if (p.mem_typed)
            STS_CHECK(make_type(&b, p.L, g, b.s, b.ms, &mt[k], diag));
    }
    rc = run_units(rd, fh, in, &b, &p, ft, mt, diag);
    if (p.file_typed) {
        /* Later plain reads address the file in bytes again. */
        int vrc = MPI_File_set_view(fh, 0, MPI_BYTE, MPI_BYTE, "native", rd->info);
        if (rc == STS_OK && vrc != MPI_SUCCESS)
            rc = sts__mpiio_fail(diag, "MPI_File_set_view", vrc);
    }
done:
    for (int k = 0; k < 2; k++) {
        if (ft[k] != MPI_DATATYPE_NULL)
            MPI_Type_free(&ft[k]);
        if (mt[k] != MPI_DATATYPE_NULL)
            MPI_Type_free(&mt[k]);
    }
    free(b.e);
    return rc;
}

/* ---- requests ------------------------------------------------------------ */

/* Elements per whole-byte group of a dtype: 1 for byte-sized dtypes, 2 for F4, 4 for F6. */
static uint64_t group_elems(sts_dtype dt)
{
    unsigned bits = sts_dtype_bits(dt);
    return (bits % 8 == 0) ? 1 : (bits % 4 == 0 ? 2 : 4);
}

static int range_error(const sts_global_tensor *t, const sts_read_req *q, uint32_t d,
                       sts_diag *diag)
{
    return sts__fail(diag, STS_E_BLOCK_RANGE,
                     "tensor '%s' dimension %u: block [%llu, %llu+%llu) lies outside [0, %llu)",
                     t->name, d, (unsigned long long)q->offsets[d],
                     (unsigned long long)q->offsets[d], (unsigned long long)q->shape[d],
                     (unsigned long long)t->shape[d]);
}

/* Local checks of one request; *tix receives the tensor's index. */
static int check_req(const sts_reader *r, const sts_read_req *q, size_t *tix, sts_diag *diag)
{
    const sts_global_tensor *t;
    uint64_t numel = 0, nbytes = 0, u;
    long i;
    if (!q->name)
        return sts__fail(diag, STS_E_ARG, "read request without a tensor name");
    i = sts_reader_find(r, q->name);
    if (i < 0)
        return sts__fail(diag, STS_E_NO_TENSOR, "tensor '%s' is not in the checkpoint", q->name);
    t = &r->tensors[i];
    *tix = (size_t)i;
    if (q->dtype != t->dtype)
        return sts__fail(diag, STS_E_DTYPE_MISMATCH, "tensor '%s' is %s, the request asks for %s",
                         t->name, sts_dtype_name(t->dtype),
                         sts_dtype_name(q->dtype) ? sts_dtype_name(q->dtype) : "an unknown dtype");
    if (q->ndim != t->ndim)
        return sts__fail(diag, STS_E_BLOCK_RANGE,
                         "tensor '%s' has %u dimensions, the request has %u", t->name, t->ndim,
                         q->ndim);
    if (q->ndim > 0 && (!q->offsets || !q->shape))
        return sts__fail(diag, STS_E_ARG, "tensor '%s': request without offsets or shape", t->name);
    for (uint32_t d = 0; d < q->ndim; d++) {
        uint64_t end;
        if (sts__add_u64(q->offsets[d], q->shape[d], &end) || end > t->shape[d])
            return range_error(t, q, d, diag);
    }
    u = group_elems(t->dtype);
    if (u > 1 && q->ndim > 0 &&
        (q->offsets[q->ndim - 1] % u != 0 || q->shape[q->ndim - 1] % u != 0))
        return sts__fail(diag, STS_E_UNSUPPORTED,
                         "tensor '%s' is %s: the block's last dimension must start and end on "
                         "a multiple of %llu elements (whole bytes)",
                         t->name, sts_dtype_name(t->dtype), (unsigned long long)u);
    if (sts__numel(q->shape, q->ndim, &numel) != STS_OK ||
        sts_dtype_nbytes(t->dtype, numel, &nbytes) != STS_OK)
        return sts__fail(diag, STS_E_BLOCK_RANGE, "tensor '%s': block size overflows", t->name);
    if (nbytes > 0 && !q->buf)
        return sts__fail(diag, STS_E_ARG, "tensor '%s': NULL buffer for %llu bytes", t->name,
                         (unsigned long long)nbytes);
    return STS_OK;
}

/* Scratch arrays for one intersection: ext, fshape, fstart, mshape, mstart. */
typedef struct isect {
    uint64_t *ext, *fshape, *fstart, *mshape, *mstart;
} isect;

/*
 * Intersects request q with stored block b of tensor t.  Returns 0 when they
 * do not meet, 1 when *x holds the box (last dimension in byte groups), or a
 * negative code.
 */
static int intersect(const sts_global_tensor *t, const sts_read_req *q, const sts__rblock *b,
                     isect *x, sts_diag *diag)
{
    uint64_t u = group_elems(t->dtype);
    for (uint32_t d = 0; d < t->ndim; d++) {
        uint64_t lo = q->offsets[d] > b->offsets[d] ? q->offsets[d] : b->offsets[d];
        uint64_t qe = q->offsets[d] + q->shape[d], be = b->offsets[d] + b->shape[d];
        uint64_t hi = qe < be ? qe : be;
        if (lo >= hi)
            return 0;
        x->ext[d] = hi - lo;
        x->fshape[d] = b->shape[d];
        x->fstart[d] = lo - b->offsets[d];
        x->mshape[d] = q->shape[d];
        x->mstart[d] = lo - q->offsets[d];
    }
    if (u > 1 && t->ndim > 0) {
        uint32_t l = t->ndim - 1;
        if (b->offsets[l] % u != 0 || b->shape[l] % u != 0)
            return sts__fail(diag, STS_E_UNSUPPORTED,
                             "tensor '%s' is %s and a stored block's rows do not start on whole "
                             "bytes; sub-byte blocks of this shape cannot be read",
                             t->name, sts_dtype_name(t->dtype));
        x->ext[l] /= u;
        x->fshape[l] /= u;
        x->fstart[l] /= u;
        x->mshape[l] /= u;
        x->mstart[l] /= u;
    }
    return 1;
}

static int read_one(sts_reader *r, const sts_read_req *q, size_t tix, const sts__xplan *xp,
                    isect *x, sts_diag *diag)
{
    int rc = STS_OK;
    const sts_global_tensor *t = &r->tensors[tix];
    uint64_t u = group_elems(t->dtype);
    for (size_t k = r->first[tix]; k < r->first[tix + 1]; k++) {
        const sts__rblock *b = &r->blocks[k];
        sts__box box;
        MPI_File fh;
        if (sts__reader_xchg_skips(xp, k))
            continue; /* read in two phases */
        rc = intersect(t, q, b, x, diag);
        if (rc < 0)
            goto done;
        if (rc == 0)
            continue;
        box.ndim = t->ndim;
        box.esize = u * sts_dtype_bits(t->dtype) / 8;
        box.ext = x->ext;
        box.fshape = x->fshape;
        box.fstart = x->fstart;
        box.fbase = b->data_off;
        box.mshape = x->mshape;
        box.mstart = x->mstart;
        box.mbase = q->buf;
        STS_CHECK(sts__reader_file(r, b->file, &fh, diag));
        rc = sts__reader_io_box(r, fh, &box, diag);
        if (rc != STS_OK) {
            sts__diag_prefix(diag, "%s: tensor '%s'", r->paths[b->file], t->name);
            goto done;
        }
    }
done:
    return rc;
}

static int check_all(const sts_reader *r, const sts_read_req *reqs, size_t n, uint32_t *maxdim,
                     sts_diag *diag)
{
    int rc = STS_OK;
    size_t tix;
    *maxdim = 0;
    if (n > 0 && !reqs)
        return sts__fail(diag, STS_E_ARG, "NULL request list");
    for (size_t i = 0; i < n; i++) {
        STS_CHECK(check_req(r, &reqs[i], &tix, diag));
        *maxdim = reqs[i].ndim > *maxdim ? reqs[i].ndim : *maxdim;
    }
done:
    return rc;
}

static int read_all(sts_reader *r, const sts_read_req *reqs, size_t n, uint32_t maxdim,
                    const sts__xplan *xp, sts_diag *diag)
{
    int rc = STS_OK;
    double t0 = MPI_Wtime();
    isect x;
    uint64_t *mem = sts__malloc_array((size_t)maxdim * 5 + 1, sizeof *mem);
    STS_GOTO_IF(!mem, diag, STS_E_NOMEM, "out of memory");
    x.ext = mem, x.fshape = mem + maxdim, x.fstart = mem + 2 * maxdim;
    x.mshape = mem + 3 * maxdim, x.mstart = mem + 4 * maxdim;
    for (size_t i = 0; i < n; i++) {
        size_t tix = (size_t)sts_reader_find(r, reqs[i].name);
        uint64_t numel = 0, nbytes = 0;
        sts__numel(reqs[i].shape, reqs[i].ndim, &numel);
        sts_dtype_nbytes(reqs[i].dtype, numel, &nbytes);
        r->stats.requests++;
        r->stats.bytes_needed += nbytes;
        STS_CHECK(read_one(r, &reqs[i], tix, xp, &x, diag));
    }
done:
    /* Keep the number of open descriptors bounded across many calls. */
    if (r->nopen > MAX_OPEN_FILES) {
        int c = sts__reader_close_files(r, diag);
        rc = rc == STS_OK ? c : rc;
    }
    r->stats.seconds += MPI_Wtime() - t0;
    free(mem);
    return rc;
}

/* Collective, agreed: the view of the blocks this rank's requests meet (reader_meta.c). */
static int fetch_own(sts_reader *r, const sts_read_req *reqs, size_t n, sts_diag *diag)
{
    int rc = STS_OK;
    sts__rbox *bx = sts__malloc_array(n + 1, sizeof *bx);
    if (!bx)
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; bx && i < n; i++)
        bx[i] =
            (sts__rbox){(size_t)sts_reader_find(r, reqs[i].name), reqs[i].offsets, reqs[i].shape};
    rc = sts__reader_meta_fetch(r, rc, bx, bx ? n : 0, diag);
    free(bx);
    return rc;
}

int sts_reader_read_local(sts_reader *r, const sts_read_req *reqs, size_t n)
{
    int rc = STS_OK;
    uint32_t maxdim = 0;
    sts__diag_clear(&r->diag);
    STS_GOTO_IF(r->dist, &r->diag, STS_E_UNSUPPORTED,
                "sts_reader_read_local: the reader's block lists are distributed "
                "(stshard_metadata \"distributed\"); only sts_reader_read fetches them");
    STS_CHECK(check_all(r, reqs, n, &maxdim, &r->diag));
    STS_CHECK(read_all(r, reqs, n, maxdim, NULL, &r->diag));
done:
    return rc;
}

int sts_reader_read(sts_reader *r, const sts_read_req *reqs, size_t n)
{
    int rc = STS_OK;
    uint32_t maxdim = 0;
    sts__xplan *xp = NULL;
    double t0;
    sts__diag_clear(&r->diag);
    /* Every rank's requests are checked before anyone reads, so a bad request
     * anywhere fails the call everywhere with the same message. */
    rc = check_all(r, reqs, n, &maxdim, &r->diag);
    STS_CHECK(sts__mpiio_agree(r->comm, rc, &r->diag));
    t0 = MPI_Wtime();
    if (r->dist)
        STS_CHECK(fetch_own(r, reqs, n, &r->diag));
    if (r->exchange) {
        rc = sts__reader_xchg_make(r, reqs, n, &xp, &r->diag);
        r->stats.seconds += MPI_Wtime() - t0;
        STS_CHECK(sts__mpiio_agree(r->comm, rc, &r->diag));
    }
    rc = read_all(r, reqs, n, maxdim, xp, &r->diag);
    if (xp) {
        t0 = MPI_Wtime();
        rc = sts__reader_xchg_run(r, xp, rc, &r->diag);
        r->stats.seconds += MPI_Wtime() - t0;
    }
    STS_CHECK(sts__mpiio_agree(r->comm, rc, &r->diag));
done:
    sts__reader_xchg_free(xp);
    sts__reader_meta_drop(r);
    return rc;
}
