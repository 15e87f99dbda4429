/*
 * writer.c - the public API of a sharded save (docs/format.md §3): handles, blocks, and
 * the choice of mode at begin and commit.  The work is done by
 *   writer_core.c    the shared core: blocks, this rank's files, headers,
 *                    staging, the rank files' writing and publishing;
 *   writer_plan.c    replica assignment, DCP_SHARDING_INFO, rank files present;
 *   writer_stream.c  streaming (sts_writer_begin / _put, then commit);
 *   writer_direct.c  direct mode (opts.direct): straight into a Hugging Face
 *                    checkpoint, no rank file.
 * The one-call "save then consolidate" (opts.consolidate_dir) lives here: it
 * is the shard-file or streaming save followed by sts_consolidate.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiio.h"
#include "writer_int.h"

void sts_save_opts_init(sts_save_opts *o)
{
    memset(o, 0, sizeof *o);
}

/* ---- create / free ------------------------------------------------------ */

int sts_writer_create(MPI_Comm comm, const char *dir, const sts_save_opts *opts, sts_writer **out)
{
    int rc = STS_OK, ok;
    sts_writer *w = NULL;
    sts_diag d;
    if (!out)
        return STS_E_ARG;
    *out = NULL;
    sts__diag_clear(&d);
    w = calloc(1, sizeof *w);
    ok = w != NULL;
    if (w)
        w->comm = MPI_COMM_NULL;
    /* Every rank must hold a handle before the collective duplication; this one
     * reduction runs on the caller's communicator. */
    STS_MPI_CALL(&d, MPI_Allreduce, (MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm));
    STS_GOTO_IF(!ok, &d, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__mpiio_comm_dup(comm, &w->comm, &w->diag));
    STS_MPI_CALL(&w->diag, MPI_Comm_rank, (w->comm, &w->rank));
    STS_MPI_CALL(&w->diag, MPI_Comm_size, (w->comm, &w->nranks));
    if (opts)
        w->opts = *opts;
    else
        sts_save_opts_init(&w->opts);
    if (!dir || !*dir)
        rc = sts__fail(&w->diag, STS_E_ARG, "no output directory given");
    else if (!(w->dir = sts__strdup(dir)))
        rc = sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__mpiio_agree(w->comm, rc, &w->diag));
    *out = w;
done:
    if (rc != STS_OK)
        sts_writer_free(w); /* collective only when the duplicate exists, on every rank */
    return rc;
}

void sts_writer_free(sts_writer *w)
{
    if (!w)
        return;
    sts__writer_stream_free(w); /* before the files: it removes the ones it left open */
    sts__writer_core_free(w);
    free(w->dir);
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    free(w);
}

const char *sts_writer_errmsg(const sts_writer *w)
{
    return w ? w->diag.message : "";
}

/* ---- blocks ------------------------------------------------------------- */

int sts_writer_add(sts_writer *w, const sts_block *b)
{
    int rc = STS_OK;
    if (!w)
        return STS_E_ARG;
    sts__diag_clear(&w->diag);
    STS_GOTO_IF(w->committed, &w->diag, STS_E_ARG, "sts_writer_add after commit");
    STS_GOTO_IF(w->begun, &w->diag, STS_E_ARG, "sts_writer_add after sts_writer_begin");
    rc = sts__writer_core_add(w, b);
done:
    if (rc != STS_OK) {
        if (b && b->name)
            sts__diag_prefix(&w->diag, "tensor '%s'", b->name);
        sts__writer_core_remember(w, rc);
    }
    return rc;
}

/* ---- streaming ---------------------------------------------------------- */

int sts_writer_begin(sts_writer *w)
{
    if (!w)
        return STS_E_ARG;
    sts__diag_clear(&w->diag);
    return sts__writer_stream_begin(w);
}

int sts_writer_stores(const sts_writer *w, const char *name, int *stores)
{
    return sts__writer_stream_stores(w, name, stores);
}

int sts_writer_put(sts_writer *w, const char *name, uint64_t off, const void *data, uint64_t len)
{
    if (!w)
        return STS_E_ARG;
    sts__diag_clear(&w->diag);
    return sts__writer_stream_put(w, name, off, data, len);
}

/* ---- one call: save, consolidate, remove ---------------------------------- */

/* Every rank removes the rank files it published; rank 0 the directory if this save made it. */
static int remove_rank_files(sts_writer *w)
{
    int rc = STS_OK;
    for (size_t i = 0; i < w->nfiles; i++)
        if (unlink(w->files[i].final_path) != 0 && errno != ENOENT && rc == STS_OK)
            rc = sts__fail(&w->diag, sts__err_from_errno(errno), "%s: cannot remove: %s",
                           w->files[i].final_path, strerror(errno));
    rc = sts__mpiio_agree(w->comm, rc, &w->diag);
    /* Only an empty directory goes: anything else the user keeps there stays. */
    if (rc == STS_OK && w->rank == 0 && w->made_dir)
        (void)rmdir(w->dir);
    return rc;
}

/*
 * Collective, agreed.  After the rank files are published: sts_consolidate
 * of w->dir into opts.consolidate_dir, then (unless keep_shards) removal of
 * the rank files.
 */
static int consolidate(sts_writer *w)
{
    int rc;
    sts_consolidate_opts co;
    sts_consolidate_stats cs;
    sts_diag d;
    sts__writer_core_cons_opts(w, &co);
    memset(&cs, 0, sizeof cs);
    sts__diag_clear(&d);
    rc = sts_consolidate(w->comm, w->dir, w->opts.consolidate_dir, &co, &cs, &d);
    if (rc != STS_OK)
        return sts__fail(&w->diag, rc, "consolidating %s into %s (the rank files are kept): %s",
                         w->dir, w->opts.consolidate_dir, d.message);
    w->out_files = cs.output_files;
    w->out_tensors = cs.tensors;
    w->out_bytes = cs.bytes_total;
    w->cons_seconds = cs.seconds;
    return w->opts.keep_shards ? STS_OK : remove_rank_files(w);
}

/* ---- commit ------------------------------------------------------------- */

static int check_declared(sts_writer *w)
{
    for (size_t i = 0; i < w->count; i++)
        if (!w->blocks[i].data && w->blocks[i].nbytes > 0)
            return sts__fail(&w->diag, STS_E_ARG,
                             "tensor '%s' was added without data (%llu bytes): its bytes are "
                             "written with sts_writer_begin and sts_writer_put",
                             w->blocks[i].name, (unsigned long long)w->blocks[i].nbytes);
    return STS_OK;
}

/* Collective, agreed.  Publishes the rank files written (rc: this rank's result), or removes
 * them everywhere; then the one-call consolidation and the statistics. */
static int finish(sts_writer *w, int rc, double t0, sts_save_stats *stats)
{
    STS_CHECK(sts__writer_core_finish(w, rc));
    if (w->opts.consolidate_dir)
        STS_CHECK(consolidate(w));
    rc = sts__writer_core_stats(w, t0, stats);
done:
    return rc;
}

/* Collective.  The commit of a save begun with sts_writer_begin. */
static int commit_stream(sts_writer *w, sts_save_stats *stats)
{
    int rc;
    double t0 = 0;
    if (w->committed) {
        /* The first commit published or removed everything; nothing is touched again. */
        rc = sts__fail(&w->diag, STS_E_ARG, "sts_writer_commit called twice");
        return sts__mpiio_agree(w->comm, rc, &w->diag);
    }
    w->committed = 1;
    rc = sts__writer_stream_end(w, &t0);
    return finish(w, rc, t0, stats);
}

int sts_writer_commit(sts_writer *w, sts_save_stats *stats)
{
    int rc = STS_OK;
    double t0 = MPI_Wtime();
    if (!w)
        return STS_E_ARG;
    sts__diag_clear(&w->diag);
    if (w->begun)
        return commit_stream(w, stats);
    if (w->committed)
        rc = sts__fail(&w->diag, STS_E_ARG, "sts_writer_commit called twice");
    else if (w->add_rc == STS_OK)
        rc = check_declared(w);
    w->committed = 1;
    STS_CHECK(sts__writer_core_prepare(w, rc));
    if (w->opts.direct) {
        /* No rank file is written: the blocks go straight into the model files. */
        STS_CHECK(sts__writer_direct_commit(w));
        sts__writer_core_free_files(w);
        rc = sts__writer_core_stats(w, t0, stats);
        goto done;
    }
    rc = finish(w, sts__writer_core_write_files(w), t0, stats);
done:
    return rc;
}
