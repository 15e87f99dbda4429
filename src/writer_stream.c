/*
 * writer_stream.c - the streaming flow of a sharded save, for callers that
 * cannot hold their blocks until the commit (stshard reshard):
 *   sts_writer_begin  plans the save as the commit would (writer_core.c's
 *                     sts__writer_core_prepare), then creates this rank's files
 *                     under their temporary names with their headers and
 *                     keeps them open (MPI_COMM_SELF handles);
 *   sts_writer_put    writes one piece of a declared block at its file
 *                     offset with independent MPI-IO (small pieces through
 *                     the staging buffer), counting the bytes per block;
 *   sts_writer_commit checks the counts, writes blocks added with data,
 *                     flushes, syncs, closes (sts__writer_stream_end); writer.c
 *                     then publishes through writer_core.c's
 *                     sts__writer_core_finish.
 * The public functions are writer.c's; they call the sts__writer_stream_*
 * ones here.
 * Every failure of a local call is remembered (sts__writer_core_remember), so the
 * commit fails on every rank and publishes nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiio.h"
#include "writer_int.h"

struct sts__writer_stream {
    /* Per block, indexed like w->blocks (kept blocks only are meaningful). */
    uint64_t *at;   /* absolute file offset of the block's first byte */
    uint64_t *got;  /* bytes put so far */
    size_t *fileno; /* index in w->files */
    /* Per file of this rank: the open temporary file and its final size. */
    MPI_File *fh;
    uint64_t *end;
    size_t nfh;
    sts__writer_stager stage;
    size_t stage_file; /* file whose bytes stage holds */
    double t0;         /* start of begin: the save's time counts from here */
};

typedef struct sts__writer_stream stream;

void sts__writer_stream_free(sts_writer *w)
{
    stream *S = w->stream;
    if (!S)
        return;
    /* A file still open belongs to a save that never reached its commit. */
    for (size_t i = 0; i < S->nfh; i++) {
        if (S->fh[i] == MPI_FILE_NULL)
            continue;
        MPI_File_close(&S->fh[i]);
        if (w->files[i].tmp_path)
            (void)unlink(w->files[i].tmp_path);
    }
    free(S->at);
    free(S->got);
    free(S->fileno);
    free(S->fh);
    free(S->end);
    free(S->stage.buf);
    free(S);
    w->stream = NULL;
}

static int stream_alloc(sts_writer *w)
{
    stream *S = calloc(1, sizeof *S);
    w->stream = S;
    if (!S)
        return sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    S->t0 = MPI_Wtime();
    S->at = sts__calloc_array(w->count, sizeof *S->at);
    S->got = sts__calloc_array(w->count, sizeof *S->got);
    S->fileno = sts__calloc_array(w->count, sizeof *S->fileno);
    if (!S->at || !S->got || !S->fileno)
        return sts__fail(&w->diag, STS_E_NOMEM, "out of memory");
    return STS_OK;
}

/* Creates file i under its temporary name and writes its header. */
static int open_file(sts_writer *w, size_t i)
{
    int rc = STS_OK;
    stream *S = w->stream;
    const sts__writer_file *f = &w->files[i];
    const sts__writer_block *last = w->order[f->first + f->nblocks - 1];
    uint64_t *begin = sts__malloc_array(f->nblocks, sizeof *begin);
    void *hdr = NULL;
    size_t hlen = 0;
    STS_GOTO_IF(!begin, &w->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__writer_core_encode_header(w, f, &hdr, &hlen, begin));
    for (size_t j = 0; j < f->nblocks; j++) {
        size_t k = (size_t)(w->order[f->first + j] - w->blocks);
        S->at[k] = hlen + begin[j];
        S->fileno[k] = i;
    }
    S->end[i] = hlen + begin[f->nblocks - 1] + last->nbytes;
    STS_CHECK(sts__mpiio_open_self(f->tmp_path, 1, MPI_INFO_NULL, &S->fh[i], &w->diag));
    rc = sts__writer_core_classify_io(w, sts__mpiio_write_at(S->fh[i], 0, hdr, hlen, &w->diag), 0,
                                      S->end[i]);
done:
    if (rc != STS_OK && !strstr(w->diag.message, f->tmp_path))
        sts__diag_prefix(&w->diag, "%s", f->tmp_path);
    sts_free(hdr);
    free(begin);
    return rc;
}

/* Local.  Every file of this rank, and the staging buffer the puts share. */
static int open_files(sts_writer *w)
{
    int rc = STS_OK;
    stream *S = w->stream;
    S->fh = sts__malloc_array(w->nfiles, sizeof *S->fh);
    S->end = sts__calloc_array(w->nfiles, sizeof *S->end);
    STS_GOTO_IF(!S->fh || !S->end, &w->diag, STS_E_NOMEM, "out of memory");
    for (S->nfh = 0; S->nfh < w->nfiles; S->nfh++)
        S->fh[S->nfh] = MPI_FILE_NULL;
    S->stage.diag = &w->diag;
    S->stage.fh = MPI_FILE_NULL;
    if (w->nfiles > 0) {
        S->stage.cap = sts__writer_core_stage_cap(w);
        S->stage.buf = malloc(S->stage.cap);
        STS_GOTO_IF(!S->stage.buf, &w->diag, STS_E_NOMEM, "out of memory (staging buffer)");
    }
    for (size_t i = 0; i < w->nfiles; i++)
        STS_CHECK(open_file(w, i));
done:
    return rc;
}

int sts__writer_stream_begin(sts_writer *w)
{
    int rc = STS_OK;
    if (w->begun || w->committed) {
        /* Nothing is planned again; the first begin's save stays as it was, but fails. */
        rc = sts__fail(&w->diag, STS_E_ARG, "sts_writer_begin %s",
                       w->committed ? "after sts_writer_commit" : "called twice");
        rc = sts__mpiio_agree(w->comm, rc, &w->diag);
        sts__writer_core_remember(w, rc);
        return rc;
    }
    w->begun = 1;
    if (w->opts.direct)
        rc = sts__fail(&w->diag, STS_E_UNSUPPORTED,
                       "a streaming save (sts_writer_begin) writes rank files: it cannot write "
                       "straight into a consolidated checkpoint (opts.direct); use "
                       "opts.consolidate_dir to consolidate the rank files after the save");
    else
        rc = stream_alloc(w);
    rc = sts__writer_core_prepare(w, rc);
    if (rc == STS_OK)
        rc = sts__mpiio_agree(w->comm, open_files(w), &w->diag);
    if (rc != STS_OK) {
        sts__writer_stream_free(w); /* closes and removes the files it created */
        sts__writer_core_remember(w, rc);
    }
    return rc;
}

int sts__writer_stream_stores(const sts_writer *w, const char *name, int *stores)
{
    long k;
    if (stores)
        *stores = 0;
    if (!w || !name || !stores || !w->stream)
        return STS_E_ARG;
    k = sts__writer_core_find(w, name);
    if (k < 0)
        return STS_E_ARG;
    *stores = w->blocks[k].keep ? 1 : 0;
    return STS_OK;
}

/* Local.  Writes bytes of stored block k at offset off of the block. */
static int put_stored(sts_writer *w, size_t k, uint64_t off, const void *data, uint64_t len)
{
    int rc = STS_OK;
    stream *S = w->stream;
    size_t fi = S->fileno[k];
    uint64_t at = S->at[k] + off;
    /* The staging buffer holds bytes of one file, which this piece must extend.  Else the
     * staged bytes are written out first, here, so that a failure names them. */
    if (S->stage.len > 0 && (S->stage_file != fi || S->stage.off + S->stage.len != at ||
                             len >= STS_WRITER_STAGE_DIRECT || S->stage.cap - S->stage.len < len)) {
        uint64_t n = S->stage.len;
        rc = sts__writer_core_stage_flush(&S->stage);
        if (rc != STS_OK) {
            sts__diag_prefix(&w->diag, "%llu staged bytes at file offset %llu",
                             (unsigned long long)n, (unsigned long long)S->stage.off);
            fi = S->stage_file;
            at = S->stage.off;
            goto done;
        }
    }
    S->stage.fh = S->fh[fi];
    S->stage_file = fi;
    rc = sts__writer_core_stage_put(&S->stage, at, data, len);
    if (rc != STS_OK) {
        sts__diag_prefix(&w->diag, "tensor '%s' (%llu bytes at file offset %llu)",
                         w->blocks[k].name, (unsigned long long)len, (unsigned long long)at);
        goto done;
    }
    S->got[k] += len;
    sts__writer_core_progress(w, len);
done:
    if (rc != STS_OK) {
        rc = sts__writer_core_classify_io(w, rc, at, S->end[fi]);
        sts__diag_prefix(&w->diag, "%s", w->files[fi].tmp_path);
    }
    return rc;
}

/* Local.  Checks a put's arguments; the index of the block in *k. */
static int check_put(sts_writer *w, const char *name, uint64_t off, const void *data, uint64_t len,
                     long *k)
{
    uint64_t end;
    const sts__writer_block *b;
    if (!name)
        return sts__fail(&w->diag, STS_E_ARG, "sts_writer_put without a tensor name");
    if (w->committed)
        return sts__fail(&w->diag, STS_E_ARG, "tensor '%s': sts_writer_put after commit", name);
    if (!w->stream)
        return sts__fail(&w->diag, STS_E_ARG, "tensor '%s': sts_writer_put %s", name,
                         w->begun ? "after a failed sts_writer_begin" : "before sts_writer_begin");
    *k = sts__writer_core_find(w, name);
    if (*k < 0)
        return sts__fail(&w->diag, STS_E_ARG, "tensor '%s': this rank added no such block", name);
    b = &w->blocks[*k];
    if (b->data)
        return sts__fail(&w->diag, STS_E_ARG,
                         "tensor '%s' was added with data; sts_writer_put is for blocks added "
                         "without",
                         name);
    if (sts__add_u64(off, len, &end) || end > b->nbytes)
        return sts__fail(&w->diag, STS_E_ARG,
                         "tensor '%s': bytes [%llu, %llu + %llu) lie outside the block's %llu "
                         "bytes",
                         name, (unsigned long long)off, (unsigned long long)off,
                         (unsigned long long)len, (unsigned long long)b->nbytes);
    if (len > 0 && !data)
        return sts__fail(&w->diag, STS_E_ARG, "tensor '%s': no data for %llu bytes", name,
                         (unsigned long long)len);
    return STS_OK;
}

int sts__writer_stream_put(sts_writer *w, const char *name, uint64_t off, const void *data,
                           uint64_t len)
{
    int rc;
    long k = -1;
    rc = check_put(w, name, off, data, len, &k);
    /* A block another rank stores is checked like any other, then dropped. */
    if (rc == STS_OK && w->blocks[k].keep && len > 0)
        rc = put_stored(w, (size_t)k, off, data, len);
    sts__writer_core_remember(w, rc);
    return rc;
}

/* ---- commit --------------------------------------------------------------- */

/* Local.  Every stored declared block got exactly its bytes; blocks added with data are
 * written now (borrowed until here, as in the one-call flow). */
static int finish_blocks(sts_writer *w)
{
    int rc = STS_OK;
    stream *S = w->stream;
    for (size_t i = 0; i < w->norder; i++) {
        const sts__writer_block *b = w->order[i];
        size_t k = (size_t)(b - w->blocks);
        STS_GOTO_IF(!b->data && S->got[k] != b->nbytes, &w->diag, STS_E_ARG,
                    "tensor '%s': %llu bytes were put into its block of %llu bytes (each byte "
                    "must be put exactly once)",
                    b->name, (unsigned long long)S->got[k], (unsigned long long)b->nbytes);
    }
    for (size_t i = 0; i < w->norder; i++) {
        const sts__writer_block *b = w->order[i];
        if (b->data && b->nbytes > 0)
            STS_CHECK(put_stored(w, (size_t)(b - w->blocks), 0, b->data, b->nbytes));
    }
    if (S->stage.len > 0) {
        rc = sts__writer_core_stage_flush(&S->stage);
        if (rc != STS_OK)
            sts__diag_prefix(&w->diag, "%s", w->files[S->stage_file].tmp_path);
    }
done:
    return rc;
}

/* Local.  Syncs (opts.fsync) and closes file i. */
static int close_file(sts_writer *w, size_t i)
{
    int rc = STS_OK;
    MPI_File *fh = &w->stream->fh[i];
    if (w->opts.fsync)
        STS_MPI_CALL(&w->diag, MPI_File_sync, (*fh));
    STS_CHECK(sts__mpiio_close(fh, &w->diag));
done:
    if (rc != STS_OK)
        sts__diag_prefix(&w->diag, "%s", w->files[i].tmp_path);
    return rc;
}

int sts__writer_stream_end(sts_writer *w, double *t0)
{
    int rc = STS_OK;
    stream *S = w->stream;
    if (w->add_rc != STS_OK)
        rc = sts__fail(&w->diag, w->add_rc, "%s", w->add_diag.message);
    else if (S)
        rc = finish_blocks(w);
    for (size_t i = 0; S && i < S->nfh; i++) {
        if (rc == STS_OK)
            rc = close_file(w, i);
        else if (S->fh[i] != MPI_FILE_NULL)
            MPI_File_close(&S->fh[i]);
    }
    *t0 = S ? S->t0 : MPI_Wtime();
    return rc;
}
