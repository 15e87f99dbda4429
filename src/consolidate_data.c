/*
 * consolidate_data.c - one rank's share of the data phase ("output-driven
 * aggregation").
 *
 * The rank walks its contiguous range of the output stream as chunks (see
 * plan.h) and gathers consecutive chunks of one output file into a window of
 * at most `cap` bytes.  For a window it reads every input run the window
 * needs, sorted by file and offset so neighbouring runs merge into one large
 * read, places the bytes in the window buffer (straight into place for
 * row-sharded runs, through a staging buffer and a strided copy otherwise),
 * and writes the whole window with one call.  A column- or 2-D-sharded
 * tensor therefore costs a few large reads and one large write per window,
 * never one small write per row.  Memory: the window plus the staging
 * buffer, each at most buffer_size / 2.
 *
 * No MPI communication happens here, only independent MPI-IO on handles
 * opened with MPI_COMM_SELF, so a failing rank cannot block the others; the
 * caller agrees on the result afterwards.
 *
 * Fast path (Linux): a window that is one contiguous run of one input file
 * (row sharding, replicas) is copied with copy_file_range(2) instead, which
 * moves the bytes inside the kernel (one copy instead of read + write, and
 * a reflink on file systems that share extents).  The first refusal (other
 * file system, unsupported) turns it off for the run and the MPI-IO path
 * takes over; STSHARD_COPY_RANGE=0 turns it off from the start.
 */
#if defined(__linux__)
#define _GNU_SOURCE /* copy_file_range */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "consolidate.h"
#include "mpiio.h"

#define MAX_PIECES 16384 /* bounds the bookkeeping of a window of tiny tensors (about 2 MiB) */
/*
 * Input files kept open at once: a window of a column-sharded tensor reads
 * from every file that holds a column, so the cache should hold them all;
 * it takes a quarter of the descriptor limit (two descriptors per file),
 * between 16 and 1024.
 */
#define CACHE_MIN 16
#define CACHE_MAX 1024
#define RUN_MAX   ((uint64_t)1 << 30) /* longest single in-kernel copy */

typedef struct wchunk {
    sts_plan_chunk c;
    uint64_t base; /* offset of the chunk in the window */
} wchunk;

typedef struct wpiece {
    sts_plan_piece pc;
    size_t chunk;
} wpiece;

typedef struct copier {
    const sts_cons_data *a;
    sts_diag *diag;
    uint64_t cap;
    unsigned char *win, *stage;
    uint32_t wfile;
    uint64_t woff, wlen;
    wchunk *chunks;
    size_t nchunks, capchunks;
    wpiece *pieces;
    size_t npieces, cappieces;
    sts_plan_pieces ps;
    MPI_File out;
    uint32_t out_file;
    int ncache;
    MPI_File *in;
    uint32_t *in_id;
    uint64_t *in_used;
    uint64_t tick, done;
    int range;                /* copy_file_range fast path still on */
    uint64_t run_len;         /* pending in-kernel copy: run_len bytes from run_in at */
    uint32_t run_in, run_out; /* run_in_off to run_out at run_out_off */
    uint64_t run_in_off, run_out_off;
    int out_fd; /* POSIX descriptors for it, -1 until needed */
    int *in_fd; /* beside the MPI handles of the same slots */
} copier;

/* Room for one more chunk and n more pieces in the window's lists. */
static int reserve(copier *C, size_t n)
{
    wchunk *c = sts__grow(C->chunks, &C->capchunks, C->nchunks + 1, sizeof *c, 64);
    wpiece *p;
    if (!c)
        return STS_E_NOMEM;
    C->chunks = c;
    p = sts__grow(C->pieces, &C->cappieces, C->npieces + n, sizeof *p, 64);
    if (!p)
        return STS_E_NOMEM;
    C->pieces = p;
    return STS_OK;
}

/* An open handle of input file id, from a small LRU cache; *slot is its entry. */
static int input(copier *C, uint32_t id, MPI_File *fh, int *slot)
{
    int rc = STS_OK, victim = -1;
    for (int i = 0; i < C->ncache; i++) {
        if (C->in[i] != MPI_FILE_NULL && C->in_id[i] == id) {
            C->in_used[i] = ++C->tick;
            *fh = C->in[i];
            *slot = i;
            return STS_OK;
        }
    }
    /* A free slot if there is one, else the least recently used. */
    victim = 0;
    for (int i = 0; i < C->ncache; i++) {
        if (C->in[i] == MPI_FILE_NULL) {
            victim = i;
            break;
        }
        if (C->in_used[i] < C->in_used[victim])
            victim = i;
    }
    STS_CHECK(sts__mpiio_close(&C->in[victim], C->diag));
    if (C->in_fd[victim] >= 0)
        close(C->in_fd[victim]);
    C->in_fd[victim] = -1;
    STS_CHECK(sts__mpiio_open_self(C->a->in_paths[id], 0, MPI_INFO_NULL, &C->in[victim], C->diag));
    C->in_id[victim] = id;
    C->in_used[victim] = ++C->tick;
    *fh = C->in[victim];
    *slot = victim;
done:
    return rc;
}

static int close_output(copier *C)
{
    int rc = STS_OK;
    if (C->out == MPI_FILE_NULL)
        return STS_OK;
    /* MPI_File_sync makes this rank's writes durable; every writer syncs its own. */
    if (C->a->fsync)
        STS_MPI_CALL(C->diag, MPI_File_sync, (C->out));
    STS_GOTO_IF(C->a->fsync && C->out_fd >= 0 && fsync(C->out_fd) != 0, C->diag,
                sts__err_from_errno(errno), "fsync failed: %s", strerror(errno));
done:
    if (C->out_fd >= 0)
        close(C->out_fd);
    C->out_fd = -1;
    if (rc != STS_OK)
        sts__diag_prefix(C->diag, "%s", C->a->tmp_paths[C->out_file]);
    if (C->out != MPI_FILE_NULL) {
        int crc = sts__mpiio_close(&C->out, C->diag);
        if (rc == STS_OK)
            rc = crc;
    }
    return rc;
}

static int output(copier *C, uint32_t file)
{
    int rc = STS_OK;
    if (C->out != MPI_FILE_NULL && C->out_file == file)
        return STS_OK;
    STS_CHECK(close_output(C));
    STS_CHECK(sts__mpiio_open_existing(C->a->tmp_paths[file], MPI_INFO_NULL, &C->out, C->diag));
    C->out_file = file;
done:
    return rc;
}

static int cmp_piece(const void *x, const void *y)
{
    const sts_plan_piece *a = &((const wpiece *)x)->pc, *b = &((const wpiece *)y)->pc;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return a->in_off < b->in_off ? -1 : a->in_off > b->in_off;
}

static uint64_t win_pos(const copier *C, const wpiece *w)
{
    return C->chunks[w->chunk].base + w->pc.pos;
}

/* Reads pieces [i, j) (adjacent in one input file) and puts them in place. */
static int fill_group(copier *C, size_t i, size_t j, uint64_t bytes)
{
    int rc = STS_OK;
    const wpiece *w = C->pieces;
    uint64_t start = w[i].pc.in_off;
    int direct = 1, slot;
    MPI_File fh;
    /* Runs that are contiguous and consecutive in the window too are read in place. */
    for (size_t k = i; k < j && direct; k++)
        direct =
            w[k].pc.contiguous && win_pos(C, &w[k]) == win_pos(C, &w[i]) + (w[k].pc.in_off - start);
    STS_CHECK(input(C, w[i].pc.file, &fh, &slot));
    if (direct) {
        rc = sts__mpiio_read_at(fh, start, C->win + win_pos(C, &w[i]), bytes, C->diag);
    } else {
        rc = sts__mpiio_read_at(fh, start, C->stage, bytes, C->diag);
        for (size_t k = i; k < j && rc == STS_OK; k++) {
            const wchunk *ch = &C->chunks[w[k].chunk];
            sts__plan_chunk_scatter(C->a->plan, &ch->c, &w[k].pc,
                                    C->stage + (w[k].pc.in_off - start), C->win + ch->base);
        }
    }
    if (rc != STS_OK)
        sts__diag_prefix(C->diag, "%s", C->a->in_paths[w[i].pc.file]);
done:
    return rc;
}

static void report(copier *C)
{
    const sts_cons_data *a = C->a;
    uint64_t total = a->plan->total_bytes, est;
    if (!a->progress || a->rank != 0)
        return;
    /* Rank 0 sees only its own share; the ranks' shares are equal, so scale it. */
    est = C->done > total / (uint64_t)a->nranks ? total : C->done * (uint64_t)a->nranks;
    a->progress(a->progress_ud, est, total);
}

/* Copies the pending run through the window buffer with MPI-IO (no fast path). */
static int run_by_buffer(copier *C, uint64_t done_bytes)
{
    int rc = STS_OK, slot;
    MPI_File fh;
    STS_CHECK(input(C, C->run_in, &fh, &slot));
    for (uint64_t at = done_bytes; at < C->run_len;) {
        uint64_t n = C->run_len - at < C->cap ? C->run_len - at : C->cap;
        rc = sts__mpiio_read_at(fh, C->run_in_off + at, C->win, n, C->diag);
        if (rc != STS_OK) {
            sts__diag_prefix(C->diag, "%s", C->a->in_paths[C->run_in]);
            goto done;
        }
        rc = sts__mpiio_write_at(C->out, C->run_out_off + at, C->win, n, C->diag);
        if (rc != STS_OK) {
            sts__diag_prefix(C->diag, "%s", C->a->tmp_paths[C->run_out]);
            goto done;
        }
        at += n;
    }
done:
    return rc;
}

static void report(copier *C);

/*
 * Copies the pending run (a stretch of output that is one contiguous run of
 * one input file) inside the kernel.  A refusal before any byte moved turns
 * the fast path off and the run goes through the buffer instead.
 */
static int flush_run(copier *C)
{
    int rc = STS_OK, slot;
    uint64_t moved = 0;
    MPI_File fh;
    if (C->run_len == 0)
        return STS_OK;
    STS_CHECK(output(C, C->run_out));
    STS_CHECK(input(C, C->run_in, &fh, &slot));
#if defined(__linux__)
    if (C->in_fd[slot] < 0)
        C->in_fd[slot] = open(C->a->in_paths[C->run_in], O_RDONLY | O_CLOEXEC);
    if (C->out_fd < 0)
        C->out_fd = open(C->a->tmp_paths[C->run_out], O_WRONLY | O_CLOEXEC);
    while (C->range && C->in_fd[slot] >= 0 && C->out_fd >= 0 && moved < C->run_len) {
        loff_t in_off = (loff_t)(C->run_in_off + moved), out_off = (loff_t)(C->run_out_off + moved);
        ssize_t n;
        STS_CHECK(STS_FAULT("write", C->diag)); /* this path writes without MPI-IO */
        STS_CHECK(STS_FAULT("cons.copy_range", C->diag));
        n = copy_file_range(C->in_fd[slot], &in_off, C->out_fd, &out_off, C->run_len - moved, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && moved == 0 &&
            (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
             errno == EBADF || errno == EPERM))
            break; /* not here: fall back for good */
        STS_GOTO_IF(n <= 0, C->diag, n < 0 ? sts__err_from_errno(errno) : STS_E_IO,
                    "copy_file_range %s -> %s at byte %llu: %s", C->a->in_paths[C->run_in],
                    C->a->tmp_paths[C->run_out], (unsigned long long)(C->run_in_off + moved),
                    n < 0 ? strerror(errno) : "unexpected end of input");
        moved += (uint64_t)n;
    }
#endif
    if (moved < C->run_len) {
        C->range = 0;
        STS_CHECK(run_by_buffer(C, moved));
    }
    C->done += C->run_len;
    C->run_len = 0;
    report(C);
done:
    return rc;
}

static int flush(copier *C)
{
    int rc = STS_OK;
    if (C->wlen == 0)
        return STS_OK;
    STS_CHECK(output(C, C->wfile));
    qsort(C->pieces, C->npieces, sizeof *C->pieces, cmp_piece);
    for (size_t i = 0, j; i < C->npieces; i = j) {
        uint64_t bytes = C->pieces[i].pc.len;
        for (j = i + 1; j < C->npieces; j++) {
            const sts_plan_piece *prev = &C->pieces[j - 1].pc, *pc = &C->pieces[j].pc;
            if (pc->file != prev->file || pc->in_off != prev->in_off + prev->len ||
                bytes + pc->len > C->cap)
                break;
            bytes += pc->len;
        }
        STS_CHECK(fill_group(C, i, j, bytes));
    }
    rc = sts__mpiio_write_at(C->out, C->woff, C->win, C->wlen, C->diag);
    if (rc != STS_OK) {
        sts__diag_prefix(C->diag, "%s", C->a->tmp_paths[C->wfile]);
        goto done;
    }
    C->done += C->wlen;
    C->wlen = 0;
    C->nchunks = 0;
    C->npieces = 0;
    report(C);
done:
    return rc;
}

/* Extends the pending in-kernel run with chunk c if c continues it; 1 when it did. */
static int extend_run(copier *C, const sts_plan_chunk *c, const sts_plan_piece *pc)
{
    if (C->run_len == 0 || C->run_out != c->file || C->run_in != pc->file ||
        C->run_out_off + C->run_len != c->out_off || C->run_in_off + C->run_len != pc->in_off ||
        C->run_len + c->len > RUN_MAX)
        return 0;
    C->run_len += c->len;
    return 1;
}

/*
 * Adds chunk c: to the pending in-kernel run when c is one contiguous input
 * run (row sharding, replicas) and the fast path is on, else to the window.
 * Only one of the two is pending at a time; each is flushed when the next
 * chunk does not continue it.
 */
static int add_chunk(copier *C, const sts_plan_chunk *c)
{
    int rc = STS_OK;
    wchunk *ch;
    STS_CHECK(sts__plan_chunk_pieces(C->a->plan, c, &C->ps, C->diag));
    if (C->range && C->ps.n == 1 && C->ps.v[0].contiguous && C->ps.v[0].len == c->len) {
        if (extend_run(C, c, &C->ps.v[0]))
            return STS_OK;
        STS_CHECK(flush(C));
        STS_CHECK(flush_run(C));
        C->run_in = C->ps.v[0].file;
        C->run_out = c->file;
        C->run_in_off = C->ps.v[0].in_off;
        C->run_out_off = c->out_off;
        C->run_len = c->len;
        return STS_OK;
    }
    STS_CHECK(flush_run(C));
    if (C->wlen > 0 && (c->file != C->wfile || c->out_off != C->woff + C->wlen ||
                        C->wlen + c->len > C->cap || C->npieces >= MAX_PIECES))
        STS_CHECK(flush(C));
    if (C->wlen == 0) {
        C->wfile = c->file;
        C->woff = c->out_off;
    }
    STS_GOTO_IF(reserve(C, C->ps.n) != STS_OK, C->diag, STS_E_NOMEM, "out of memory");
    ch = &C->chunks[C->nchunks];
    ch->c = *c;
    ch->base = C->wlen;
    for (size_t i = 0; i < C->ps.n; i++) {
        C->pieces[C->npieces].pc = C->ps.v[i];
        C->pieces[C->npieces++].chunk = C->nchunks;
    }
    C->nchunks++;
    C->wlen += c->len;
done:
    return rc;
}

static int alloc_cache(copier *C)
{
    struct rlimit rl;
    long n = CACHE_MIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = (long)(rl.rlim_cur / 4);
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        n = CACHE_MAX;
    C->ncache = (int)(n < CACHE_MIN ? CACHE_MIN : n > CACHE_MAX ? CACHE_MAX : n);
    C->in = sts__malloc_array((size_t)C->ncache, sizeof *C->in);
    C->in_id = sts__calloc_array((size_t)C->ncache, sizeof *C->in_id);
    C->in_used = sts__calloc_array((size_t)C->ncache, sizeof *C->in_used);
    C->in_fd = sts__malloc_array((size_t)C->ncache, sizeof *C->in_fd);
    if (!C->in || !C->in_id || !C->in_used || !C->in_fd) {
        C->ncache = 0; /* nothing to close */
        return sts__fail(C->diag, STS_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < C->ncache; i++) {
        C->in[i] = MPI_FILE_NULL;
        C->in_fd[i] = -1;
    }
    return STS_OK;
}

/* Half the buffer holds the window, half the staging area. */
static uint64_t window_cap(size_t buffer_size)
{
    uint64_t cap = (uint64_t)buffer_size / 2;
    return cap < 8 ? 8 : cap;
}

int sts__consolidate_data_range_env(void)
{
    const char *env = getenv("STSHARD_COPY_RANGE");
    return !(env && strcmp(env, "0") == 0);
}

int sts__consolidate_data_copy(const sts_cons_data *a, uint64_t *bytes_local, sts_diag *diag)
{
    int rc = STS_OK;
    copier C;
    sts_plan_iter it;
    sts_plan_chunk c;
    memset(&C, 0, sizeof C);
    C.a = a;
    C.diag = diag;
    C.out = MPI_FILE_NULL;
    C.out_fd = -1;
    STS_CHECK(alloc_cache(&C));
    C.range = a->copy_range;
    C.cap = window_cap(a->buffer_size);
    *bytes_local = 0;
    {
        /* A share smaller than the buffers needs no more than itself: with many
         * ranks and little data (many tiny tensors) the buffers would set the
         * peak memory of a rank.  Any budget >= 8 gives the same bytes. */
        uint64_t lo, hi, want;
        sts__plan_chunk_rank_range(a->plan, a->rank, a->nranks, &lo, &hi);
        want = hi - lo < 4096 ? 4096 : hi - lo;
        if (want < C.cap) /* only ever smaller than the caller's buffer */
            C.cap = want;
    }
    sts__plan_chunk_iter_init(&it, a->plan, a->rank, a->nranks, C.cap);
    if (!sts__plan_chunk_iter_next(&it, &c))
        goto done; /* nothing to write on this rank */
    C.win = malloc(C.cap);
    C.stage = malloc(C.cap);
    STS_GOTO_IF(!C.win || !C.stage, diag, STS_E_NOMEM, "cannot allocate %llu bytes of buffers",
                (unsigned long long)(2 * C.cap));
    do
        STS_CHECK(add_chunk(&C, &c));
    while (sts__plan_chunk_iter_next(&it, &c));
    STS_CHECK(flush(&C));
    STS_CHECK(flush_run(&C));
    STS_CHECK(close_output(&C));
    *bytes_local = C.done;
done:
    if (C.out != MPI_FILE_NULL)
        MPI_File_close(&C.out);
    if (C.out_fd >= 0)
        close(C.out_fd);
    for (int i = 0; i < C.ncache; i++) {
        if (C.in[i] != MPI_FILE_NULL)
            MPI_File_close(&C.in[i]);
        if (C.in_fd[i] >= 0)
            close(C.in_fd[i]);
    }
    free(C.in);
    free(C.in_id);
    free(C.in_used);
    free(C.in_fd);
    sts__plan_chunk_pieces_free(&C.ps);
    free(C.win);
    free(C.stage);
    free(C.chunks);
    free(C.pieces);
    return rc;
}
