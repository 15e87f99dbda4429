/*
 * share.c - a rank's share of a checkpoint under a strategy, and chunking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "share.h"

static int to_model_tensor(const sts_global_tensor *g, model_tensor *mt, char *err, size_t errlen)
{
    if (g->ndim > MODEL_MAX_DIMS) {
        snprintf(err, errlen, "tensor '%s' has %u dimensions; the strategies handle up to %d",
                 g->name, g->ndim, MODEL_MAX_DIMS);
        return -1;
    }
    memset(mt, 0, sizeof *mt);
    /* The name only selects the tensor-parallel role; a long one may be cut here. */
    for (size_t i = 0; i + 1 < sizeof mt->name && g->name[i]; i++)
        mt->name[i] = g->name[i];
    mt->dtype = g->dtype;
    mt->ndim = g->ndim;
    for (uint32_t d = 0; d < g->ndim; d++)
        mt->shape[d] = g->shape[d];
    mt->key = model_name_key(g->name);
    mt->role = model_role_of(g->name, g->ndim);
    return 0;
}

static void swap_u64(uint64_t *a, uint64_t *b)
{
    uint64_t x = *a;
    *a = *b;
    *b = x;
}

/* The rank's block; row sharding along another dimension is row sharding of the
 * tensor with that dimension swapped to the front. */
static int block_for(const model_tensor *mt, const share_opts *o, int rank, int nranks,
                     uint64_t *off, uint64_t *shape, int *repl)
{
    if (o->strategy == MODEL_ROWS && o->dim > 0 && mt->ndim > (uint32_t)o->dim) {
        model_tensor sw = *mt;
        uint32_t d = (uint32_t)o->dim;
        int has;
        swap_u64(&sw.shape[0], &sw.shape[d]);
        has = model_local_block(&sw, MODEL_ROWS, rank, nranks, off, shape, repl);
        swap_u64(&off[0], &off[d]);
        swap_u64(&shape[0], &shape[d]);
        return has;
    }
    return model_local_block(mt, o->strategy, rank, nranks, off, shape, repl);
}

int share_of(const sts_reader *r, const share_opts *o, int rank, int nranks, share_block **out,
             size_t *n, char *err, size_t errlen)
{
    size_t count = sts_reader_count(r), k = 0;
    share_block *v = calloc(count ? count : 1, sizeof *v);
    *out = NULL;
    *n = 0;
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const sts_global_tensor *g = sts_reader_tensor(r, i);
        model_tensor mt;
        share_block *b = &v[k];
        if (to_model_tensor(g, &mt, err, errlen) != 0) {
            free(v);
            return -1;
        }
        if (!block_for(&mt, o, rank, nranks, b->off, b->shape, &b->replicated))
            continue;
        b->tensor = i;
        b->t = g;
        b->bytes = model_block_bytes(&mt, b->shape);
        k++;
    }
    *out = v;
    *n = k;
    return 0;
}

int share_agree(MPI_Comm comm, int rc, char *msg, size_t len)
{
    struct {
        int code, rank;
    } mine, worst;
    char buf[1024];
    int me = 0;
    MPI_Comm_rank(comm, &me);
    mine.code = rc;
    mine.rank = me;
    MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MINLOC, comm);
    if (worst.code == STS_OK)
        return STS_OK;
    /* A message agreed by the library already names its rank. */
    if (me == worst.rank && strncmp(msg, "rank ", 5) == 0)
        snprintf(buf, sizeof buf, "%s", msg);
    else if (me == worst.rank)
        snprintf(buf, sizeof buf, "rank %d: %s", me, msg);
    MPI_Bcast(buf, (int)sizeof buf, MPI_CHAR, worst.rank, comm);
    snprintf(msg, len, "%s", buf);
    return worst.code;
}

int share_round_go(MPI_Comm comm, int more, int failed)
{
    int mine[2] = {more != 0, failed != 0}, all[2] = {0, 1};
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, comm);
    return all[0] && !all[1];
}

int share_parse_dim(const char *s, int *dim)
{
    uint64_t v;
    if (cli_parse_u64(s, &v) != 0 || v >= MODEL_MAX_DIMS)
        return -1;
    *dim = (int)v;
    return 0;
}

/* Bytes of one row of level k: dims after k. */
static uint64_t row_bytes(const share_block *b, uint32_t k)
{
    uint64_t n = 1, bytes = 0;
    for (uint32_t j = k + 1; j < b->t->ndim; j++)
        n *= b->shape[j];
    sts_dtype_nbytes(b->t->dtype, n, &bytes);
    return bytes;
}

void share_chunker_init(share_chunker *c, const share_block *b, uint64_t max_bytes, int outer_only)
{
    uint32_t nd = b->t->ndim, top;
    memset(c, 0, sizeof *c);
    c->b = b;
    if (nd == 0 || b->bytes == 0) {
        /* One chunk: the whole (scalar or empty) block. */
        c->g = nd ? b->shape[0] : 1;
        return;
    }
    /* Sub-byte rows can only be cut between whole rows of the last dimension. */
    top = outer_only ? 0 : (sts_dtype_bits(b->t->dtype) % 8 && nd >= 2 ? nd - 2 : nd - 1);
    if (sts_dtype_bits(b->t->dtype) % 8 && nd == 1)
        top = 0;
    for (c->level = 0; c->level < top; c->level++)
        if (row_bytes(b, c->level) <= max_bytes)
            break;
    c->rowbytes = row_bytes(b, c->level);
    c->g = c->rowbytes ? max_bytes / c->rowbytes : b->shape[c->level];
    if (sts_dtype_bits(b->t->dtype) % 8 && c->level + 1 == nd)
        c->g = b->shape[c->level]; /* a 1-D sub-byte block stays whole */
    c->g = c->g < 1 ? 1 : c->g;
    c->g = c->g < b->shape[c->level] ? c->g : b->shape[c->level];
}

int share_chunker_next(share_chunker *c, uint64_t *off, uint64_t *shape, uint64_t *bytes,
                       uint64_t *buf_off)
{
    const share_block *b = c->b;
    uint32_t nd = b->t->ndim, L = c->level;
    uint64_t n;
    if (c->done)
        return 0;
    if (nd == 0 || b->bytes == 0) {
        memcpy(off, b->off, nd * sizeof *off);
        memcpy(shape, b->shape, nd * sizeof *shape);
        *bytes = b->bytes;
        *buf_off = 0;
        c->done = 1;
        return 1;
    }
    n = b->shape[L] - c->r < c->g ? b->shape[L] - c->r : c->g;
    for (uint32_t j = 0; j < nd; j++) {
        off[j] = b->off[j] + (j < L ? c->idx[j] : j == L ? c->r : 0);
        shape[j] = j < L ? 1 : j == L ? n : b->shape[j];
    }
    *bytes = n * c->rowbytes;
    *buf_off = L == 0 ? c->r * c->rowbytes : UINT64_MAX;
    c->r += n;
    if (c->r == b->shape[L]) {
        uint32_t j = L;
        c->r = 0;
        while (j > 0 && ++c->idx[j - 1] == b->shape[j - 1])
            c->idx[--j] = 0;
        c->done = j == 0;
    }
    return 1;
}

void share_walk_init(share_walk *w, const share_block *blocks, size_t n, uint64_t batch,
                     int outer_only)
{
    memset(w, 0, sizeof *w);
    w->blocks = blocks;
    w->n = n;
    w->batch = batch;
    w->outer_only = outer_only;
}

static int walk_next(share_walk *w, share_chunk *c)
{
    if (w->has_pending) {
        *c = w->pending;
        w->has_pending = 0;
        return 1;
    }
    while (w->i < w->n) {
        if (!w->started) {
            share_chunker_init(&w->ch, &w->blocks[w->i], w->batch, w->outer_only);
            w->started = 1;
        }
        c->b = &w->blocks[w->i];
        if (share_chunker_next(&w->ch, c->off, c->shape, &c->bytes, &c->buf_off))
            return 1;
        w->i++;
        w->started = 0;
    }
    return 0;
}

size_t share_walk_round(share_walk *w, share_chunk *out, size_t cap, uint64_t *bytes)
{
    size_t n = 0;
    share_chunk c;
    *bytes = 0;
    while (n < cap && walk_next(w, &c)) {
        if (n > 0 && *bytes + c.bytes > w->batch) {
            w->pending = c;
            w->has_pending = 1;
            break;
        }
        *bytes += c.bytes;
        out[n++] = c;
    }
    return n;
}

int share_walk_more(const share_walk *w)
{
    return w->has_pending || w->i < w->n;
}
