/*
 * writer_direct.c - direct mode (opts.direct): saving straight into a
 * Hugging Face checkpoint on top of the sharded writer's core
 * (writer_core.c).  No rank file is written.  Phases, each agreed:
 *
 *     1. records  every rank packs its kept blocks (replicas are resolved by
 *                 writer_plan.c as for rank files) as block records, numbered
 *                 as `consolidate` would number the rank files (rank, then
 *                 file index; entries in header order), so names, header
 *                 bytes, tensor offsets and the choice among identical
 *                 duplicate blocks are those of the two-step path.
 *     2. plan     the distributed metadata plane (meta.c), as for
 *                 consolidate: each tensor's records go to one owner rank,
 *                 which checks them (with the global shapes the blocks
 *                 declare) and decides whether the tensor goes through the
 *                 exchange; every rank gets one summary per tensor and lays
 *                 out the same plan; each rank learns which of its blocks
 *                 were kept and fetches the blocks of the exchanged tensors.
 *     3. create   rank 0 checks the output directory (publish.c, as consolidate).
 *     4. data     per output file (writer_direct_io.c): collective open,
 *                 independent writes, the exchange or collective rounds
 *                 through file views, collective close.
 *     5. publish  publish.c, as consolidate: renames, the index last, directory sync.
 *    On failure rank 0 removes the temporaries: no final name appears.
 *
 * No rank holds every block record: a rank keeps its own records' verdicts,
 * the records it owns while they are checked, the tensor summaries, and the
 * blocks of the exchanged tensors (every rank builds both sides of each
 * exchange round from them: writer_direct_agg.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
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
 * The records of this rank's kept blocks, file by file in header order.
 * Its files are numbered after those of the lower ranks (base).  A direct
 * plan's data lie in memory, not in files: data_off carries the block's
 * index in w->blocks, which the fetched records bring back (sts__dinfo).
 */
static int pack_records(dsave *D, uint32_t base, sts_bytes *k)
{
    const sts_writer *w = D->w;
    int rc = STS_OK;
    hpos *v = sts__malloc_array(w->norder ? w->norder : 1, sizeof *v);
    D->rec_local = sts__malloc_array(w->norder ? w->norder : 1, sizeof *D->rec_local);
    STS_GOTO_IF(!v || !D->rec_local, D->diag, STS_E_NOMEM, "out of memory");
    for (size_t f = 0; f < w->nfiles; f++) {
        header_order(w, &w->files[f], v);
        for (size_t i = 0; i < w->files[f].nblocks; i++) {
            const sts__writer_block *b = w->order[v[i].at];
            size_t local = (size_t)(b - w->blocks), nd = b->ndim;
            STS_GOTO_IF(sts__meta_put_block(k, base + (uint32_t)f, (uint32_t)i, local, b->name,
                                            strlen(b->name), b->dtype, b->ndim, b->dims + nd,
                                            b->dims + 2 * nd, b->dims),
                        D->diag, STS_E_NOMEM, "out of memory");
            D->rec_local[D->nrecs++] = local;
        }
    }
done:
    free(v);
    return rc;
}

/* Names every rank's inputs "rank R" (the planner's messages) and finds this rank's base. */
static int name_inputs(dsave *D, const uint64_t *nfiles, uint32_t *base)
{
    uint64_t total = 0;
    for (int r = 0; r < D->nranks; r++) {
        if (r == D->rank)
            *base = (uint32_t)total;
        total += nfiles[r];
    }
    if (total > UINT32_MAX)
        return sts__fail(D->diag, STS_E_UNSUPPORTED, "%llu rank files", (unsigned long long)total);
    D->nsrc = (size_t)total;
    D->file_rank = sts__calloc_array(D->nsrc ? D->nsrc : 1, sizeof *D->file_rank);
    D->src_names = sts__calloc_array(D->nsrc ? D->nsrc : 1, sizeof *D->src_names);
    if (!D->file_rank || !D->src_names)
        return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    for (int r = 0, i = 0; r < D->nranks; r++)
        for (uint64_t j = 0; j < nfiles[r]; j++, i++) {
            char buf[32];
            snprintf(buf, sizeof buf, "rank %d", r);
            D->file_rank[i] = r;
            D->src_names[i] = sts__strdup(buf);
            if (!D->src_names[i])
                return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
        }
    return STS_OK;
}

/* Collective, agreed: every rank's file count (one number a rank), names, this rank's records. */
static int phase_records(dsave *D, sts_bytes *k)
{
    int rc = STS_OK;
    uint64_t mine = D->w->nfiles, *all = sts__calloc_array((size_t)D->nranks, sizeof *all);
    uint32_t base = 0;
    STS_GOTO_IF(!all, D->diag, STS_E_NOMEM, "out of memory");
    STS_MPI_CALL(D->diag, MPI_Allgather, (&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, D->comm));
    STS_CHECK(name_inputs(D, all, &base));
    rc = pack_records(D, base, k);
done:
    free(all);
    return sts__mpiio_agree(D->comm, rc, D->diag);
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

/* Where each fetched block lies: its rank (from its input number) and its index there. */
static int locate_fetched(dsave *D)
{
    size_t n = D->meta.blocks_fetched;
    D->info = sts__calloc_array(n ? n : 1, sizeof *D->info);
    if (!D->info)
        return sts__fail(D->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        sts_plan_block *b = &D->meta.blocks[i];
        if (b->file >= D->nsrc)
            return sts__fail(D->diag, STS_E_INTERNAL, "fetched block of unknown input %u", b->file);
        D->info[i].rank = D->file_rank[b->file];
        D->info[i].local = (size_t)b->data_off;
        b->data_off = 0; /* pieces' in_off: offsets in the block's memory */
    }
    return STS_OK;
}

static int phase_plan(dsave *D)
{
    sts_bytes k = {NULL, 0, 0};
    int rc = plan_mapping(D);
    sts_plan_opts *po = &D->po;
    /* Rank 0 encodes each header as it writes it, as consolidate does. */
    sts__plan_opts_output(po, &D->co, D->map, D->nmap);
    rc = sts__mpiio_agree(D->comm, rc, D->diag);
    if (rc == STS_OK)
        rc = phase_records(D, &k);
    po->file_names = (const char *const *)D->src_names;
    D->sv.flags = sts__writer_direct_io_flags;
    D->sv.ctx = D;
    D->sv.fetch = STS_DIRECT_FLAG_AGG;
    if (rc == STS_OK)
        rc = sts__meta_plan(D->comm, &k, po, &D->sv, &D->meta, D->diag);
    free(k.buf);
    STS_CHECK(rc);
    D->plan = D->meta.plan;
    if (D->sv.nrecs != D->nrecs)
        rc = sts__fail(D->diag, STS_E_INTERNAL, "%zu verdicts for %zu records", D->sv.nrecs,
                       D->nrecs);
    if (rc == STS_OK)
        rc = locate_fetched(D);
    if (rc == STS_OK)
        rc = STS_FAULT("direct.planned", D->diag);
    rc = sts__mpiio_agree(D->comm, rc, D->diag);
done:
    return rc;
}

/* ---- 3. create, 5. publish ------------------------------------------------------ */

static int phase_create(dsave *D)
{
    D->out.plan = D->plan;
    D->out.encode = &D->po;
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
    free(D->rec_local);
    free(D->pieces);
    free(D->rounds);
    free(D->map);
    free(D->info);
    free(D->sv.kept);
    sts__meta_free(&D->meta);
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
