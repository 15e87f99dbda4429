/*
 * writer_core.c - the shared core of a sharded save (docs/format.md §3), under the mode
 * dispatch of writer.c: the blocks and their name table, the plan of this
 * rank's files, the staging of writes, headers, and the rank files' writing
 * and publishing.
 *
 * Commit phases, each ending in an error agreement so no rank waits forever:
 *   1. blocks: a failed sts_writer_add on any rank fails the commit everywhere;
 *   2. replicas: whole-tensor blocks are gathered and each replicated tensor
 *      is given to exactly one holder, balancing bytes (writer_plan.c);
 *   3. plan: output file of each kept block; rank 0 checks the directory for
 *      rank files that the save would clash with;
 *   4. data: headers (sts_header_encode, canonical) and blocks written under
 *      temporary names through MPI_COMM_SELF handles;
 *   5. publish: renames once every rank succeeded; else temporaries removed.
 * Phases 1-3 are sts__writer_core_prepare, 5 is sts__writer_core_finish; every
 * mode runs them.  Phase 4 is sts__writer_core_write_files for a one-call
 * save, comes in pieces in a streaming one (writer_stream.c), and in direct
 * mode writes the consolidated checkpoint itself instead, whose publishing
 * replaces phase 5 (writer_direct.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "hashtab.h"
#include "mpiio.h"
#include "writer_int.h"

/* Blocks smaller than this go through the staging buffer, so thousands of
 * small tensors become a few large writes; larger ones are written straight
 * from the caller's memory. */
#define STAGE_DIRECT STS_WRITER_STAGE_DIRECT
/* The staging buffer's bound: the only memory a save allocates for data. */
#define STAGE_CAP STS_WRITER_STAGE_CAP

/* ---- blocks and the name table ------------------------------------------ */

static const char *block_key(const void *ctx, size_t index, size_t *len)
{
    const char *name = ((const sts_writer *)ctx)->blocks[index].name;
    *len = strlen(name);
    return name;
}

long sts__writer_core_find(const sts_writer *w, const char *name)
{
    return sts__hashtab_find(&w->names, name, strlen(name));
}

/* Checks that s is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0)
            return 0;
        cp = n == 0 ? *p : (uint32_t)(*p & (0x3f >> n));
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

static int check_block(const sts_block *b, uint64_t *nbytes, sts_diag *diag)
{
    int rc = STS_OK;
    uint64_t numel = 0, gnumel = 0, gbytes = 0;
    STS_GOTO_IF(!b || !b->name, diag, STS_E_ARG, "block without a name");
    STS_GOTO_IF(strcmp(b->name, "__metadata__") == 0, diag, STS_E_RESERVED_NAME,
                "a tensor may not be named __metadata__");
    STS_GOTO_IF(!utf8_valid(b->name), diag, STS_E_ARG, "tensor name is not valid UTF-8");
    STS_GOTO_IF((unsigned)b->dtype >= STS_DTYPE_COUNT, diag, STS_E_ARG, "unknown dtype %d",
                (int)b->dtype);
    STS_GOTO_IF(b->ndim > 0 && (!b->global_shape || !b->offsets || !b->shape), diag, STS_E_ARG,
                "global_shape, offsets and shape must be given for %u dimensions", b->ndim);
    for (uint32_t d = 0; d < b->ndim; d++) {
        uint64_t end;
        STS_GOTO_IF(sts__add_u64(b->offsets[d], b->shape[d], &end) || end > b->global_shape[d],
                    diag, STS_E_ARG,
                    "dimension %u: block [%llu, %llu + %llu) lies outside the global size %llu", d,
                    (unsigned long long)b->offsets[d], (unsigned long long)b->offsets[d],
                    (unsigned long long)b->shape[d], (unsigned long long)b->global_shape[d]);
    }
    STS_CHECK(sts__numel(b->global_shape, b->ndim, &gnumel));
    STS_CHECK(sts_dtype_nbytes(b->dtype, gnumel, &gbytes));
    STS_CHECK(sts__numel(b->shape, b->ndim, &numel));
    /* NULL data declares the block: its bytes come through sts_writer_put. */
    STS_CHECK(sts_dtype_nbytes(b->dtype, numel, nbytes));
done:
    if (rc != STS_OK && diag && diag->message[0] == '\0')
        sts__fail(diag, rc, "%s", sts_strerror(rc));
    return rc;
}

/* Copies the block's description (the data stays borrowed). */
static int push_block(sts_writer *w, const sts_block *b, uint64_t nbytes)
{
    sts__writer_block *k, *grown;
    int whole = 1, rc;
    grown = sts__grow(w->blocks, &w->cap, w->count + 1, sizeof *grown, 16);
    if (!grown)
        return STS_E_NOMEM;
    w->blocks = grown;
    if (!w->names.key)
        sts__hashtab_init(&w->names, block_key, w);
    k = &w->blocks[w->count];
    memset(k, 0, sizeof *k);
    k->name = sts__strdup(b->name);
    k->dims = sts__malloc_array(3 * (size_t)b->ndim + 1, sizeof *k->dims);
    if (!k->name || !k->dims) {
        free(k->name);
        free(k->dims);
        return STS_E_NOMEM;
    }
    for (uint32_t d = 0; d < b->ndim; d++) {
        k->dims[d] = b->global_shape[d];
        k->dims[b->ndim + d] = b->offsets[d];
        k->dims[2 * b->ndim + d] = b->shape[d];
        whole &= b->offsets[d] == 0 && b->shape[d] == b->global_shape[d];
    }
    k->dtype = b->dtype;
    k->ndim = b->ndim;
    k->data = b->data;
    k->nbytes = nbytes;
    k->whole = whole;
    k->keep = 1;
    /* sts__writer_core_add looked the name up already: this cannot find it. */
    rc =
        sts__hashtab_insert(&w->names, w->count, sts__hashtab_hash(k->name, strlen(k->name)), NULL);
    if (rc != STS_OK) {
        free(k->name);
        free(k->dims);
        return rc < 0 ? rc : STS_E_INTERNAL;
    }
    w->count++;
    return STS_OK;
}

int sts__writer_core_add(sts_writer *w, const sts_block *b)
{
    int rc = STS_OK;
    uint64_t nbytes = 0;
    STS_CHECK(check_block(b, &nbytes, &w->diag));
    STS_GOTO_IF(sts__writer_core_find(w, b->name) >= 0, &w->diag, STS_E_DUPLICATE_NAME,
                "this rank added the tensor twice");
    rc = push_block(w, b, nbytes);
    STS_GOTO_IF(rc != STS_OK, &w->diag, rc, "%s",
                rc == STS_E_NOMEM ? "out of memory" : "too many tensors on this rank");
done:
    return rc;
}

void sts__writer_core_remember(sts_writer *w, int rc)
{
    /* The first failure is kept: commit reports it on every rank. */
    if (rc != STS_OK && w->add_rc == STS_OK) {
        w->add_rc = rc;
        memcpy(&w->add_diag, &w->diag, sizeof w->add_diag);
    }
}

/* ---- directory, free ---------------------------------------------------- */

/* Rank 0 creates the directory; then every rank checks that it sees one there
 * (a directory that is local to one node would show up here). */
static int make_dir(sts_writer *w)
{
    int rc = STS_OK;
    struct stat sb;
    if (w->rank == 0) {
        w->made_dir = stat(w->dir, &sb) != 0;
        rc = sts__path_mkdir_p(w->dir, &w->diag);
    }
    STS_CHECK(sts__mpiio_agree(w->comm, rc, &w->diag));
    if (stat(w->dir, &sb) != 0)
        rc = sts__fail(&w->diag, sts__err_from_errno(errno), "%s: %s", w->dir, strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
        rc = sts__fail(&w->diag, STS_E_EXIST, "%s: exists and is not a directory", w->dir);
    rc = sts__mpiio_agree(w->comm, rc, &w->diag);
done:
    return rc;
}

void sts__writer_core_free_files(sts_writer *w)
{
    for (size_t i = 0; i < w->nfiles; i++) {
        free(w->files[i].final_path);
        free(w->files[i].tmp_path);
    }
    free(w->files);
    w->files = NULL;
    w->nfiles = 0;
}

void sts__writer_core_free(sts_writer *w)
{
    for (size_t i = 0; i < w->count; i++) {
        free(w->blocks[i].name);
        free(w->blocks[i].dims);
    }
    sts__writer_core_free_files(w);
    free(w->blocks);
    sts__hashtab_free(&w->names);
    free(w->order);
}

/* ---- plan: files of this rank ------------------------------------------ */

/* Canonical order within a file: dtype rank descending, then name (bytewise). */
static int order_cmp(const void *pa, const void *pb)
{
    const sts__writer_block *a = *(sts__writer_block *const *)pa;
    const sts__writer_block *b = *(sts__writer_block *const *)pb;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    if (a->dtype != b->dtype)
        return a->dtype > b->dtype ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Assigns output files to the kept blocks and names this rank's files. */
static int plan_files(sts_writer *w)
{
    int rc = STS_OK;
    const sts_mapping *m = w->opts.mapping;
    unsigned total = m ? sts_mapping_file_count(m) : 1;
    size_t nkeep = 0;
    char name[128];

    for (size_t i = 0; i < w->count; i++) {
        sts__writer_block *b = &w->blocks[i];
        if (!b->keep)
            continue;
        b->file = m ? sts_mapping_get(m, b->name) : 1;
        STS_GOTO_IF(b->file == 0, &w->diag, STS_E_MAPPING, "tensor '%s' is not in the mapping",
                    b->name);
        nkeep++;
    }
    w->order = sts__malloc_array(nkeep, sizeof *w->order);
    w->files = sts__calloc_array(nkeep, sizeof *w->files);
    STS_GOTO_IF(!w->order || !w->files, &w->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < w->count; i++)
        if (w->blocks[i].keep)
            w->order[w->norder++] = &w->blocks[i];
    if (w->norder > 0)
        qsort(w->order, w->norder, sizeof *w->order, order_cmp);
    for (size_t i = 0; i < w->norder; i++) {
        const sts__writer_block *b = w->order[i];
        sts__writer_file *f;
        if (i > 0 && w->order[i - 1]->file == b->file) {
            w->files[w->nfiles - 1].nblocks++;
            continue;
        }
        f = &w->files[w->nfiles++];
        f->index = b->file;
        f->first = i;
        f->nblocks = 1;
        snprintf(name, sizeof name, STS_RANK_FILE_FMT, w->rank + 1, b->file, total);
        f->final_path = sts__path_join(w->dir, name);
        f->tmp_path = f->final_path ? sts__path_tmp(f->final_path) : NULL;
        STS_GOTO_IF(!f->tmp_path, &w->diag, STS_E_NOMEM, "out of memory");
    }
done:
    return rc;
}

/* ---- data: one file --------------------------------------------------- */

typedef sts__writer_stager stager;

int sts__writer_core_stage_flush(stager *s)
{
    int rc = STS_OK;
    if (s->len > 0)
        rc = sts__mpiio_write_at(s->fh, s->off, s->buf, s->len, s->diag);
    s->len = 0;
    return rc;
}

/* Writes len bytes at off, through the staging buffer when they are small. */
int sts__writer_core_stage_put(stager *s, uint64_t off, const void *p, uint64_t len)
{
    int rc = STS_OK;
    if (len == 0)
        return STS_OK;
    if (len >= STAGE_DIRECT || len > s->cap) {
        STS_CHECK(sts__writer_core_stage_flush(s));
        return sts__mpiio_write_at(s->fh, off, p, len, s->diag);
    }
    if (s->len > 0 && (s->off + s->len != off || s->cap - s->len < len))
        STS_CHECK(sts__writer_core_stage_flush(s));
    if (s->len == 0)
        s->off = off;
    memcpy(s->buf + s->len, p, len);
    s->len += len;
done:
    return rc;
}

void sts__writer_core_progress(sts_writer *w, uint64_t bytes)
{
    /* Rank 0 stands for all ranks: its fraction done, scaled to the global total. */
    w->done_local += bytes;
    if (w->rank != 0 || !w->opts.progress || w->bytes_local == 0)
        return;
    w->opts.progress(
        w->opts.progress_ud,
        (uint64_t)((double)w->done_local / (double)w->bytes_local * (double)w->bytes_total),
        w->bytes_total);
}

int sts__writer_core_encode_header(sts_writer *w, const sts__writer_file *f, void **hdr,
                                   size_t *hlen, uint64_t *begin)
{
    int rc = STS_OK;
    sts_tensor_desc *desc = sts__calloc_array(f->nblocks, sizeof *desc);
    uint64_t *end = sts__malloc_array(f->nblocks, sizeof *end);
    char *info = NULL;
    sts_meta_entry meta[3];
    STS_GOTO_IF(!desc || !end, &w->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < f->nblocks; i++) {
        const sts__writer_block *b = w->order[f->first + i];
        desc[i].name = b->name;
        desc[i].dtype = b->dtype;
        desc[i].ndim = b->ndim;
        desc[i].shape = b->dims + 2 * b->ndim;
    }
    STS_CHECK(sts__writer_plan_sharding_json(w, f, &info));
    meta[0].key = "DCP_SHARDING_INFO";
    meta[0].value = info;
    meta[1].key = "DCP_VERSION";
    meta[1].value = "1.0";
    meta[2].key = "format";
    meta[2].value = "pt";
    STS_CHECK(sts_header_encode(desc, f->nblocks, meta, 3, STS_LAYOUT_CANONICAL, 0, hdr, hlen,
                                begin, end, &w->diag));
    for (size_t i = 0; i < f->nblocks; i++) {
        const sts__writer_block *b = w->order[f->first + i];
        /* The blocks were passed in canonical order, so the encoder packs them in that order. */
        STS_GOTO_IF(end[i] - begin[i] != b->nbytes || (i > 0 && begin[i] != end[i - 1]), &w->diag,
                    STS_E_INTERNAL, "header encoder placed tensor '%s' unexpectedly", b->name);
    }
done:
    free(desc);
    free(end);
    free(info);
    return rc;
}

/*
 * MPI-IO reports a full file system as a short write or a generic I/O error
 * (errno does not come through).  When the directory's file system has less
 * room left than the file still needed from byte `at`, say so.
 */
int sts__writer_core_classify_io(sts_writer *w, int rc, uint64_t at, uint64_t file_end)
{
    struct statvfs sv;
    uint64_t avail;
    if (rc != STS_E_IO || statvfs(w->dir, &sv) != 0)
        return rc;
    avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (avail >= file_end - at)
        return rc;
    w->diag.code = STS_E_NOSPACE;
    sts__diag_prefix(&w->diag, "no space left on device (%llu bytes free, %llu more needed)",
                     (unsigned long long)avail, (unsigned long long)(file_end - at));
    return STS_E_NOSPACE;
}

/* Header, blocks, optional sync and close of an open file; *at tracks the offset reached. */
static int write_body(sts_writer *w, const sts__writer_file *f, stager *s, const void *hdr,
                      size_t hlen, const uint64_t *begin, uint64_t *at)
{
    int rc = STS_OK;
    s->len = 0;
    STS_CHECK(sts__writer_core_stage_put(s, 0, hdr, hlen));
    for (size_t i = 0; i < f->nblocks; i++) {
        const sts__writer_block *b = w->order[f->first + i];
        *at = hlen + begin[i];
        rc = sts__writer_core_stage_put(s, *at, b->data, b->nbytes);
        if (rc != STS_OK) {
            sts__diag_prefix(&w->diag, "tensor '%s' (%llu bytes at file offset %llu)", b->name,
                             (unsigned long long)b->nbytes, (unsigned long long)*at);
            goto done;
        }
        sts__writer_core_progress(w, b->nbytes);
    }
    STS_CHECK(sts__writer_core_stage_flush(s));
    if (w->opts.fsync)
        STS_MPI_CALL(&w->diag, MPI_File_sync, (s->fh));
    STS_CHECK(sts__mpiio_close(&s->fh, &w->diag));
done:
    return rc;
}

static int write_file(sts_writer *w, const sts__writer_file *f, stager *s)
{
    int rc = STS_OK;
    void *hdr = NULL;
    size_t hlen = 0;
    uint64_t *begin = sts__malloc_array(f->nblocks, sizeof *begin), at = 0, end;
    s->fh = MPI_FILE_NULL;
    STS_GOTO_IF(!begin, &w->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__writer_core_encode_header(w, f, &hdr, &hlen, begin));
    end = hlen + begin[f->nblocks - 1] + w->order[f->first + f->nblocks - 1]->nbytes;
    STS_CHECK(sts__mpiio_open_self(f->tmp_path, 1, MPI_INFO_NULL, &s->fh, &w->diag));
    rc = sts__writer_core_classify_io(w, write_body(w, f, s, hdr, hlen, begin, &at), at, end);
done:
    if (s->fh != MPI_FILE_NULL)
        MPI_File_close(&s->fh);
    /* Failures from the open already name the file. */
    if (rc != STS_OK && !strstr(w->diag.message, f->tmp_path))
        sts__diag_prefix(&w->diag, "%s", f->tmp_path);
    sts_free(hdr);
    free(begin);
    return rc;
}

/* The staging buffer's size: what will pass through it, up to its bound (plus room for
 * headers, which are usually small). */
uint64_t sts__writer_core_stage_cap(const sts_writer *w)
{
    uint64_t small = 0;
    for (size_t i = 0; i < w->norder; i++) {
        uint64_t n = w->order[i]->nbytes;
        small += n < STAGE_DIRECT ? n : 0;
    }
    return small + 64 * 1024 < STAGE_CAP ? small + 64 * 1024 : STAGE_CAP;
}

int sts__writer_core_write_files(sts_writer *w)
{
    int rc = STS_OK;
    stager s;
    memset(&s, 0, sizeof s);
    s.diag = &w->diag;
    if (w->nfiles > 0) {
        s.cap = sts__writer_core_stage_cap(w);
        s.buf = malloc(s.cap);
        STS_GOTO_IF(!s.buf, &w->diag, STS_E_NOMEM, "out of memory (staging buffer)");
    }
    for (size_t i = 0; i < w->nfiles; i++)
        STS_CHECK(write_file(w, &w->files[i], &s));
done:
    free(s.buf);
    return rc;
}

/* ---- publish ------------------------------------------------------------ */

/*
 * Waits until every rank has finished writing, sleeping between tests of a
 * nonblocking barrier.  The agreement's blocking MPI_Allreduce would spin
 * instead: where ranks share cores, or the node is busy, a rank that
 * finished early would take CPU time from the ranks still copying data into
 * the file system.  Every rank joins, failed or not (the barrier is
 * collective); `mine` is this rank's result so far and is returned unless
 * it is STS_OK and the barrier itself fails.
 */
static int wait_quietly(sts_writer *w, int mine)
{
    int rc = STS_OK, flag = 0;
    MPI_Request req = MPI_REQUEST_NULL;
    const struct timespec pause = {0, 200000}; /* 0.2 ms: small next to any write */
    sts_diag d;
    sts__diag_clear(&d);
    STS_MPI_CALL(&d, MPI_Ibarrier, (w->comm, &req));
    while (!flag) {
        STS_MPI_CALL(&d, MPI_Test, (&req, &flag, MPI_STATUS_IGNORE));
        if (!flag)
            nanosleep(&pause, NULL);
    }
done:
    if (mine != STS_OK)
        return mine; /* w->diag already holds this rank's failure */
    if (rc != STS_OK)
        memcpy(&w->diag, &d, sizeof d);
    return rc;
}

static void remove_quietly(const char *path)
{
    if (path)
        (void)unlink(path);
}

/* Renames this rank's files, counting them so a failure elsewhere can undo exactly these. */
static int rename_files(sts_writer *w)
{
    int rc = STS_OK;
    for (w->renamed = 0; w->renamed < w->nfiles; w->renamed++)
        STS_CHECK(sts__mpiio_rename(w->files[w->renamed].tmp_path, w->files[w->renamed].final_path,
                                    &w->diag));
done:
    return rc;
}

void sts__writer_core_cleanup(sts_writer *w)
{
    for (size_t i = 0; i < w->nfiles; i++) {
        remove_quietly(w->files[i].tmp_path);
        if (i < w->renamed)
            remove_quietly(w->files[i].final_path);
    }
}

/* The final progress report and the agreed statistics of a save that succeeded. */
int sts__writer_core_stats(sts_writer *w, double t0, sts_save_stats *stats)
{
    int rc = STS_OK;
    uint64_t mine[2] = {w->bytes_local, w->nfiles}, all[2] = {0, 0};
    double secs = MPI_Wtime() - t0, max = 0;
    if (w->rank == 0 && w->opts.progress)
        w->opts.progress(w->opts.progress_ud, w->bytes_total, w->bytes_total);
    STS_MPI_CALL(&w->diag, MPI_Allreduce, (mine, all, 2, MPI_UINT64_T, MPI_SUM, w->comm));
    STS_MPI_CALL(&w->diag, MPI_Allreduce, (&secs, &max, 1, MPI_DOUBLE, MPI_MAX, w->comm));
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->bytes_local = w->bytes_local;
        stats->bytes_total = all[0];
        stats->files_total = all[1];
        stats->seconds = max;
        stats->output_files = w->out_files;
        stats->output_tensors = w->out_tensors;
        stats->output_bytes = w->out_bytes;
        stats->consolidate_seconds = w->cons_seconds;
    }
done:
    return rc;
}

/* Renames, makes the renames durable, removes stale rank files; on any failure
 * every rank takes back what it renamed, so no final name of this save remains. */
static int publish(sts_writer *w)
{
    int rc = sts__mpiio_agree(w->comm, rename_files(w), &w->diag);
    if (rc == STS_OK && w->opts.fsync)
        rc = sts__mpiio_agree(
            w->comm, w->rank == 0 ? sts__path_fsync_dir(w->dir, &w->diag) : STS_OK, &w->diag);
    if (rc == STS_OK)
        rc = sts__mpiio_agree(w->comm, sts__writer_plan_remove_stale(w), &w->diag);
    if (rc != STS_OK)
        sts__writer_core_cleanup(w);
    return rc;
}

int sts__writer_core_prepare(sts_writer *w, int rc)
{
    if (rc == STS_OK && w->add_rc != STS_OK)
        rc = sts__fail(&w->diag, w->add_rc, "%s", w->add_diag.message);
    else if (rc == STS_OK && w->opts.direct && w->opts.consolidate_dir)
        rc = sts__fail(&w->diag, STS_E_ARG, "direct and consolidate_dir exclude each other");
    STS_CHECK(sts__mpiio_agree(w->comm, rc, &w->diag));
    STS_CHECK(make_dir(w));
    STS_CHECK(sts__writer_plan_resolve_replicas(w));
    rc = plan_files(w);
    if (rc == STS_OK && !w->opts.direct)
        rc = sts__writer_plan_check_dir(w);
    /* Free space for every rank's data, checked once by rank 0 before any byte is written. */
    if (rc == STS_OK && w->rank == 0)
        rc = sts__path_check_space(w->dir, w->bytes_total, &w->diag);
    rc = sts__mpiio_agree(w->comm, rc, &w->diag);
done:
    return rc;
}

int sts__writer_core_finish(sts_writer *w, int rc)
{
    rc = wait_quietly(w, rc);
    rc = sts__mpiio_agree(w->comm, rc, &w->diag);
    if (rc != STS_OK) {
        sts__writer_core_cleanup(w);
        return rc;
    }
    return publish(w);
}

/* ---- output options ------------------------------------------------------ */

void sts__writer_core_cons_opts(const sts_writer *w, sts_consolidate_opts *o)
{
    if (w->opts.consolidate)
        *o = *w->opts.consolidate;
    else
        sts_consolidate_opts_init(o);
    /* The reference design passes one fqn_to_index_mapping to both steps. */
    if (!o->mapping && o->max_file_size == 0)
        o->mapping = w->opts.mapping;
    o->fsync |= w->opts.fsync;
    o->force |= w->opts.force;
    if (!o->progress) {
        o->progress = w->opts.progress;
        o->progress_ud = w->opts.progress_ud;
    }
}
