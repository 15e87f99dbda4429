/*
 * writer_direct.c - direct mode (opts.direct): saving straight into a
 * Hugging Face checkpoint on top of the sharded writer's core
 * (writer_core.c).  No rank file is written.  Phases, each agreed:
 *
 *     1. records  every rank packs its kept blocks (replicas are resolved by
 *                 writer_plan.c as for rank files) in the order its rank files
 *                 would hold them; sts__exchange_allgather gives all to every rank.
 *     2. plan     the records go to sts__plan_build, numbered as the rank files
 *                 would be numbered by `consolidate` (sorted names: rank, then
 *                 file index), so names, header bytes, tensor offsets and the
 *                 choice among identical duplicate blocks are those of the
 *                 two-step path; then the declared global shapes are checked.
 *     3. create   rank 0 checks the output directory (publish.c, as consolidate).
 *     4. data     per output file (writer_direct_io.c): collective open,
 *                 independent writes, collective rounds through file views,
 *                 collective close.
 *     5. publish  publish.c, as consolidate: renames, the index last, directory sync.
 *    On failure rank 0 removes the temporaries: no final name appears.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpiio.h"
#include "writer_direct.h"

/* ---- 1. records ------------------------------------------------------------ */

/* A block's position in its rank file: the order `consolidate` reads it back in. */
typedef struct hpos {
    uint64_t begin, end;
    const char *name;
    size_t at; /* index in w->order */
} hpos;

static int cmp_hpos(const void *x, const void *y)
{
    const hpos *a = x, *b = y;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

/*
 * The rank file of f lists its blocks in canonical order with packed
 * offsets, and the header parser hands them out sorted by (begin, end,
 * name): the same order, except that zero-size tensors sharing an offset
 * come by name.  Fills v[0..f->nblocks) in that order.
 */
static void header_order(const sts_writer *w, const sts__writer_file *f, hpos *v)
{
    uint64_t at = 0;
    int sorted = 1;
    for (size_t i = 0; i < f->nblocks; i++) {
        const sts__writer_block *b = w->order[f->first + i];
        v[i].begin = at;
        v[i].end = at + b->nbytes;
        v[i].name = b->name;
        v[i].at = f->first + i;
        at = v[i].end;
        if (i > 0 && cmp_hpos(&v[i - 1], &v[i]) > 0)
            sorted = 0;
    }
    if (!sorted)
        qsort(v, f->nblocks, sizeof *v, cmp_hpos);
}

/*
 * Record (8-byte aligned fields): u64 local block index, u32 file ordinal of
 * this rank, u32 name bytes, u32 dtype, u32 ndim, u64 offsets[ndim],
 * u64 shape[ndim], u64 global shape[ndim], name + NUL padded to 8.
 */
static int pack_block(sts_bytes *k, const sts_writer *w, size_t at, uint32_t ordinal)
{
    const sts__writer_block *b = w->order[at];
    uint32_t v[4] = {ordinal, (uint32_t)strlen(b->name), (uint32_t)b->dtype, b->ndim};
    const uint64_t *dims = b->dims; /* global shape, offsets, shape */
    if (sts__bytes_put_u64(k, (uint64_t)(b - w->blocks)) || sts__bytes_put(k, v, sizeof v) ||
        sts__bytes_put(k, dims + b->ndim, 8 * (size_t)b->ndim) ||
        sts__bytes_put(k, dims + 2 * (size_t)b->ndim, 8 * (size_t)b->ndim) ||
        sts__bytes_put(k, dims, 8 * (size_t)b->ndim) || sts__bytes_put_str(k, b->name, v[1]))
        return STS_E_NOMEM;
    return STS_OK;
}

static int pack_records(const sts_writer *w, sts_bytes *k, sts_diag *diag)
{
    int rc = STS_OK;
    hpos *v = sts__malloc_array(w->norder ? w->norder : 1, sizeof *v);
    STS_GOTO_IF(!v, diag, STS_E_NOMEM, "out of memory");
    for (size_t f = 0; f < w->nfiles; f++) {
        header_order(w, &w->files[f], v);
        for (size_t i = 0; i < w->files[f].nblocks; i++)
            STS_GOTO_IF(pack_block(k, w, v[i].at, (uint32_t)f), diag, STS_E_NOMEM, "out of memory");
    }
done:
    free(v);
    return rc;
}

/*
 * Walks every rank's records.  Input files are numbered as `consolidate`
 * numbers the rank files (rank, then file index); without out, only counts
 * records and files.
 */
static int walk_records(dsave *D, const uint64_t *start, const uint64_t *len, int fill)
{
    size_t n = 0, nfiles = 0;
    for (int r = 0; r < D->nranks; r++) {
        const unsigned char *p = D->recs + start[r], *end = p + len[r];
        uint32_t last = UINT32_MAX;
        while (p < end) {
            uint32_t v[4];
            uint64_t local;
            memcpy(&local, p, 8);
            memcpy(v, p + 8, sizeof v);
            if (v[3] > STS_PLAN_MAX_NDIM * 1024)
                return -1;
            if (v[0] != last)
                nfiles++;
            last = v[0];
            if (fill) {
                sts_plan_block *b = &D->blocks[n];
                b->file = (uint32_t)(nfiles - 1);
                b->name_len = v[1];
                b->dtype = (sts_dtype)v[2];
                b->ndim = v[3];
                b->offsets = (const uint64_t *)(const void *)(p + 24);
                b->shape = b->offsets + b->ndim;
                b->data_off = 0;
                D->info[n].gshape = b->shape + b->ndim;
                D->info[n].rank = r;
                D->info[n].local = (size_t)local;
                b->name = (const char *)(D->info[n].gshape + b->ndim);
                D->file_rank[nfiles - 1] = r;
            }
            p += 24 + 24 * (size_t)v[3] + sts__bytes_str_space(v[1]);
            n++;
        }
    }
    D->nblocks = n;
    D->nsrc = nfiles;
    return 0;
}

static int decode_records(dsave *D, const uint64_t *start, const uint64_t *len)
{
    if (walk_records(D, start, len, 0) != 0)
        return sts__fail(D->diag, STS_E_INTERNAL, "corrupt block record");
    D->blocks = sts__calloc_array(D->nblocks ? D->nblocks : 1, sizeof *D->blocks);
    D->info = sts__calloc_array(D->nblocks ? D->nblocks : 1, sizeof *D->info);
    D->file_rank = sts__calloc_array(D->nsrc ? D->nsrc : 1, sizeof *D->file_rank);
    D->src_names = sts__calloc_array(D->nsrc ? D->nsrc : 1, sizeof *D->src_names);
    if (!D->blocks || !D->info || !D->file_rank || !D->src_names)
        return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    walk_records(D, start, len, 1);
    /* The planner names its inputs in messages: here they are ranks. */
    for (size_t i = 0; i < D->nsrc; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "rank %d", D->file_rank[i]);
        D->src_names[i] = sts__strdup(buf);
        if (!D->src_names[i])
            return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    }
    return STS_OK;
}

static int phase_records(dsave *D)
{
    int rc = STS_OK;
    sts_bytes k = {NULL, 0, 0};
    uint64_t *start = sts__calloc_array((size_t)D->nranks, sizeof *start);
    uint64_t *len = sts__calloc_array((size_t)D->nranks, sizeof *len);
    rc = start && len ? pack_records(D->w, &k, D->diag)
                      : sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__exchange_allgather(D->comm, rc, &k, &D->recs, start, len, D->diag));
    rc = sts__mpiio_agree(D->comm, decode_records(D, start, len), D->diag);
done:
    free(k.buf);
    free(start);
    free(len);
    return rc;
}

/* ---- 2. plan ---------------------------------------------------------------- */

static int plan_mapping(dsave *D)
{
    const sts_mapping *m = D->co.mapping;
    if (!m)
        return STS_OK;
    D->nmap = sts_mapping_count(m);
    D->map = sts__calloc_array(D->nmap ? D->nmap : 1, sizeof *D->map);
    if (!D->map)
        return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < D->nmap; i++) {
        int rc = sts_mapping_at(m, i, &D->map[i].name, &D->map[i].file_index);
        if (rc != STS_OK)
            return sts__fail(D->diag, rc, "mapping entry %zu", i);
    }
    return STS_OK;
}

static int cmp_named(const void *x, const void *y)
{
    const named *a = x, *b = y;
    int c = memcmp(a->name, b->name, a->len < b->len ? a->len : b->len);
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static const char *fmt_shape(const uint64_t *v, uint32_t n, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (uint32_t i = 0; i < n && k + 24 < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
    snprintf(buf + k, len - k, "]");
    return buf;
}

/*
 * The planner derives a tensor's global shape from its blocks; a block also
 * declares one.  Before planning: all blocks of a tensor must declare the
 * same (else STS_E_ARG, as for replicas).  After planning (t != NULL): the
 * derived shape must equal the declared one, else the blocks leave the end
 * of the tensor uncovered (STS_E_COVERAGE_GAP).
 */
static int check_group(dsave *D, const named *g, size_t n, const sts_plan_tensor *t)
{
    const sts_plan_block *f = &D->blocks[g[0].at];
    const uint64_t *gs = D->info[g[0].at].gshape;
    char s1[256], s2[256];
    for (size_t i = 1; !t && i < n; i++) {
        const sts_plan_block *b = &D->blocks[g[i].at];
        if (b->ndim == f->ndim && memcmp(D->info[g[i].at].gshape, gs, 8 * (size_t)f->ndim) == 0)
            continue;
        return sts__fail(
            D->diag, STS_E_ARG, "tensor '%s': rank %d gives the global shape %s, rank %d gives %s",
            f->name, D->info[g[0].at].rank, fmt_shape(gs, f->ndim, s1, sizeof s1),
            D->info[g[i].at].rank, fmt_shape(D->info[g[i].at].gshape, b->ndim, s2, sizeof s2));
    }
    if (t && memcmp(t->shape, gs, 8 * (size_t)t->ndim) != 0)
        return sts__fail(D->diag, STS_E_COVERAGE_GAP,
                         "tensor '%s' (global shape %s): the blocks cover only %s", f->name,
                         fmt_shape(gs, f->ndim, s1, sizeof s1),
                         fmt_shape(t->shape, t->ndim, s2, sizeof s2));
    return STS_OK;
}

/* Sorts the records by name (once) and checks each tensor's group; with_plan: see check_group. */
static int check_global(dsave *D, int with_plan)
{
    int rc = STS_OK;
    const sts_plan *P = with_plan ? D->plan : NULL;
    size_t nt = P ? P->ntensors : 0;
    named *tens = sts__malloc_array(nt ? nt : 1, sizeof *tens);
    STS_GOTO_IF(!tens, D->diag, STS_E_NOMEM, "out of memory");
    if (!D->byname) {
        D->byname = sts__malloc_array(D->nblocks ? D->nblocks : 1, sizeof *D->byname);
        STS_GOTO_IF(!D->byname, D->diag, STS_E_NOMEM, "out of memory");
        for (size_t i = 0; i < D->nblocks; i++)
            D->byname[i] = (named){D->blocks[i].name, D->blocks[i].name_len, i};
        qsort(D->byname, D->nblocks, sizeof *D->byname, cmp_named);
    }
    for (size_t i = 0; i < nt; i++)
        tens[i] = (named){P->tensors[i].name, P->tensors[i].name_len, i};
    qsort(tens, nt, sizeof *tens, cmp_named);
    for (size_t i = 0, j, t = 0; i < D->nblocks; i = j) {
        const named *g = D->byname + i;
        for (j = i + 1; j < D->nblocks && cmp_named(g, &D->byname[j]) == 0; j++)
            ;
        /* Dropped tensors (drop_unmapped) have no plan entry. */
        while (t < nt && cmp_named(&tens[t], g) < 0)
            t++;
        if (P && (t == nt || cmp_named(&tens[t], g) != 0))
            continue;
        STS_CHECK(check_group(D, g, j - i, P ? &P->tensors[tens[t].at] : NULL));
    }
done:
    free(tens);
    return rc;
}

static int phase_plan(dsave *D)
{
    int rc = plan_mapping(D);
    sts_plan_opts po;
    memset(&po, 0, sizeof po);
    po.map = D->map;
    po.nmap = D->nmap;
    po.max_file_size = D->co.max_file_size;
    po.layout = D->co.layout;
    po.align = D->co.align;
    po.drop_unmapped = D->co.drop_unmapped;
    po.file_names = (const char *const *)D->src_names;
    if (rc == STS_OK)
        rc = check_global(D, 0);
    if (rc == STS_OK)
        rc = sts__plan_build(D->blocks, D->nblocks, &po, &D->plan, D->diag);
    if (rc == STS_OK)
        rc = check_global(D, 1);
    if (rc == STS_OK)
        rc = STS_FAULT("direct.planned", D->diag);
    return sts__mpiio_agree(D->comm, rc, D->diag);
}

/* ---- 3. create, 5. publish ------------------------------------------------------ */

static int phase_create(dsave *D)
{
    D->out.plan = D->plan;
    D->out.dir = D->w->dir;
    D->out.fsync = D->co.fsync;
    D->out.force = D->co.force;
    D->out.comm = D->comm;
    D->out.rank = D->rank;
    /* The temporaries are created by the collective opens of the data phase. */
    return sts__publish_open(&D->out, 0, D->diag);
}

/* ---- entry point ------------------------------------------------------------------ */

static void dsave_free(dsave *D)
{
    sts__publish_free(&D->out);
    for (size_t i = 0; D->src_names && i < D->nsrc; i++)
        free(D->src_names[i]);
    free(D->src_names);
    free(D->file_rank);
    free(D->pieces);
    free(D->rounds);
    free(D->byname);
    free(D->agg);
    free(D->map);
    sts__plan_free(D->plan);
    free(D->blocks);
    free(D->info);
    free(D->recs);
}

int sts__writer_direct_commit(sts_writer *w)
{
    int rc = STS_OK;
    dsave D;
    memset(&D, 0, sizeof D);
    D.w = w;
    D.comm = w->comm;
    D.rank = w->rank;
    D.nranks = w->nranks;
    D.diag = &w->diag;
    sts__writer_core_cons_opts(w, &D.co);
    rc = sts__writer_direct_io_settings(&D);
    if (rc == STS_OK && D.co.align % 8)
        rc = sts__fail(D.diag, STS_E_ARG, "align must be a multiple of 8");
    STS_CHECK(sts__mpiio_agree(D.comm, rc, D.diag));
    STS_CHECK(phase_records(&D));
    STS_CHECK(phase_plan(&D));
    STS_CHECK(sts__mpiio_agree(D.comm, sts__writer_direct_io_pieces(&D), D.diag));
    STS_CHECK(phase_create(&D));
    STS_CHECK(sts__writer_direct_io_write(&D));
    STS_CHECK(sts__publish_commit(&D.out, D.diag));
    w->out_files = D.plan->nfiles;
    w->out_tensors = D.plan->ntensors;
    w->out_bytes = D.plan->total_bytes;
done:
    dsave_free(&D);
    return rc;
}
