/*
 * reader_meta.c - the reader's distributed metadata ("stshard_metadata":
 * "distributed"): no rank holds every block record.
 *
 * At open each rank still reads the headers of files r, r + P, ...; the
 * block records then go to an owner rank per tensor (sts__meta_owner, the
 * hash consolidation uses), which alone builds and checks that tensor's
 * table (reader.c's sts__reader_table, so the checks are the same code).
 * Every rank receives one summary per tensor (name, dtype, global shape,
 * block count, first file), so the tensor table and every local accessor
 * but sts_reader_block stay local.
 *
 * A read fetches, inside the collective sts_reader_read, the stored blocks
 * that meet the call's boxes: requests go to the owners in one personalized
 * exchange, replies come back in a second, and the rank builds a view (the
 * reader's first/blocks arrays) that holds only those blocks, in table
 * order.  A block that meets nothing does not change what a read does, so
 * the view reads the same bytes as the full table.  Two-phase reads plan
 * from every rank's requests and need the same view on every rank: they
 * fetch the blocks of all the gathered requests (reader_xchg.c).
 *
 * Memory per rank: the summaries (every tensor), the owned blocks (about
 * 1/P of all), and the blocks one read call needs.  Traffic at open: each
 * record travels once (to its owner) and each summary to every rank.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "meta.h"
#include "mpiio.h"
#include "reader.h"

/* Words of a header record entry (reader.c's pack_header) with ndim dims and an nlen name. */
static size_t entry_words(uint64_t ndim, uint64_t nlen)
{
    return 4 + 2 * (size_t)ndim + (size_t)(nlen / 8 + 1);
}

static int owner_of(const sts_reader *r, const uint64_t *e)
{
    uint64_t ndim = e[1];
    return sts__meta_owner((const char *)(e + 4 + 2 * ndim), (size_t)e[3], r->nranks);
}

/*
 * Local.  Regroups this rank's packed headers by owner: each entry becomes a
 * record of its own ([file, 1, entry]), and owner o's records are
 * out[pos[o] ..), scount[o] bytes.  With out NULL only scount is summed.
 */
static void route(const sts_reader *r, const sts_bytes *mine, uint64_t *out, uint64_t *pos,
                  uint64_t *scount)
{
    const uint64_t *w = (const uint64_t *)(const void *)mine->buf;
    size_t nw = mine->buf ? mine->len / 8 : 0, at = 0;
    while (at + 2 <= nw) {
        uint64_t file = w[at], nt = w[at + 1];
        at += 2;
        for (uint64_t i = 0; i < nt; i++) {
            const uint64_t *e = w + at;
            size_t words = entry_words(e[1], e[3]);
            int o = owner_of(r, e);
            if (out) {
                uint64_t *d = out + pos[o] / 8;
                d[0] = file;
                d[1] = 1;
                memcpy(d + 2, e, words * 8);
                pos[o] += (words + 2) * 8;
            } else {
                scount[o] += (words + 2) * 8;
            }
            at += words;
        }
    }
}

/* Collective, agreed: the records of the tensors this rank owns, into r->own_records. */
static int send_to_owners(sts_reader *r, int rc, sts_bytes *mine, size_t *len, sts_diag *diag)
{
    sts_bytes parts = {NULL, 0, 0};
    uint64_t *scount = sts__calloc_array((size_t)r->nranks, sizeof *scount);
    uint64_t *pos = sts__calloc_array((size_t)r->nranks, sizeof *pos);
    uint64_t *rstart = sts__calloc_array((size_t)r->nranks, sizeof *rstart);
    uint64_t *rlen = sts__calloc_array((size_t)r->nranks, sizeof *rlen);
    if (rc == STS_OK && (!scount || !pos || !rstart || !rlen))
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    if (rc == STS_OK) {
        route(r, mine, NULL, NULL, scount);
        for (int o = 1; o < r->nranks; o++)
            pos[o] = pos[o - 1] + scount[o - 1];
        parts.len = parts.cap = (size_t)(pos[r->nranks - 1] + scount[r->nranks - 1]);
        parts.buf = malloc(parts.len + 8);
        if (!parts.buf)
            rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
        else
            route(r, mine, (uint64_t *)(void *)parts.buf, pos, NULL);
    }
    /* The packed headers are not needed again: free them before the records arrive. */
    sts__bytes_free(mine);
    rc = sts__exchange_alltoall(r->comm, rc, &parts, scount, &r->own_records, rstart, rlen, diag);
    if (rc == STS_OK)
        *len = (size_t)sts__exchange_compact(r->own_records, rstart, rlen, r->nranks);
    sts__bytes_free(&parts);
    free(scount);
    free(pos);
    free(rstart);
    free(rlen);
    return rc;
}

/* Bytewise order, shorter name first on a tie (the table's order). */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen == blen ? 0 : (alen < blen ? -1 : 1);
}

/*
 * Collective, agreed.  Owners fail independently; the error that wins is the
 * one a single table of every block would have reported: the lowest pass,
 * then the first tensor by name (then the lowest rank).  Only the failing
 * ranks' (pass, name) travel; the winner alone presents its error.
 */
/* Local.  The rank whose (pass, name) comes first among the gathered ones, or INT_MAX. */
static int first_failure(const sts_reader *r, const unsigned char *all, const uint64_t *start,
                         const uint64_t *len)
{
    int who = INT_MAX;
    const uint64_t *best = NULL;
    for (int k = 0; k < r->nranks; k++) {
        const uint64_t *h = (const uint64_t *)(const void *)(all + start[k]);
        if (len[k] < 16)
            continue; /* rank k passed */
        if (!best || h[0] < best[0] ||
            (h[0] == best[0] && name_cmp((const char *)(h + 2), (size_t)h[1],
                                         (const char *)(best + 2), (size_t)best[1]) < 0)) {
            who = k;
            best = h;
        }
    }
    return who;
}

/*
 * Collective, agreed.  Owners fail independently; the error that wins is the
 * one a single table of every block would have reported: the lowest pass,
 * then the first tensor by name (then the lowest rank).  Only the failing
 * ranks' (pass, name) travel; the winner alone presents its error.
 */
static int agree_first(sts_reader *r, int mine, const sts__rfail *f, sts_diag *diag)
{
    int rc = STS_OK, worst = STS_OK;
    sts_bytes b = {NULL, 0, 0};
    unsigned char *all = NULL;
    uint64_t *start = NULL, *len = NULL;
    STS_MPI_CALL(diag, MPI_Allreduce, (&mine, &worst, 1, MPI_INT, MPI_MIN, r->comm));
    if (worst == STS_OK)
        goto done;
    start = sts__malloc_array((size_t)r->nranks, sizeof *start);
    len = sts__malloc_array((size_t)r->nranks, sizeof *len);
    if (!start || !len)
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    if (rc == STS_OK && mine != STS_OK) {
        uint64_t head[2] = {(uint64_t)f->pass, f->len};
        if (sts__bytes_put(&b, head, sizeof head) != STS_OK ||
            sts__bytes_put(&b, f->name, f->len) != STS_OK)
            rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    STS_CHECK(sts__exchange_allgather(r->comm, rc, &b, &all, start, len, diag));
    rc = sts__mpiio_agree(r->comm, r->rank == first_failure(r, all, start, len) ? mine : STS_OK,
                          diag);
done:
    /* An MPI failure above is this rank's alone: agree on it. */
    if (rc == STS_E_MPI)
        rc = sts__mpiio_agree(r->comm, rc, diag);
    sts__bytes_free(&b);
    free(all);
    free(start);
    free(len);
    return rc;
}

/* ---- summaries ------------------------------------------------------------------ */

/* Summary: dtype, ndim, nblocks, first file, nbytes, name length, shape[ndim], name + NUL. */
static int pack_summaries(const sts_reader *r, sts_bytes *b)
{
    int rc = STS_OK;
    static const char zeros[8];
    for (size_t j = 0; j < r->own.ntensors && rc == STS_OK; j++) {
        const sts_global_tensor *t = &r->own.tensors[j];
        size_t len = strlen(t->name);
        uint64_t head[6] = {(uint64_t)t->dtype, t->ndim,
                            t->nblocks,         r->own.blocks[r->own.first[j]].file,
                            t->nbytes,          len};
        rc = sts__bytes_put(b, head, sizeof head);
        if (rc == STS_OK)
            rc = sts__bytes_put(b, t->shape, t->ndim * sizeof(uint64_t));
        if (rc == STS_OK)
            rc = sts__bytes_put(b, t->name, len);
        if (rc == STS_OK)
            rc = sts__bytes_put(b, zeros, 8 - len % 8);
    }
    return rc;
}

typedef struct summ {
    sts_global_tensor t;
    uint32_t file0;
} summ;

static int cmp_summ(const void *pa, const void *pb)
{
    const summ *a = pa, *b = pb;
    return name_cmp(a->t.name, strlen(a->t.name), b->t.name, strlen(b->t.name));
}

/* Walks the gathered summaries; with v NULL only counts them. */
static size_t decode_summaries(const sts_reader *r, summ *v)
{
    const uint64_t *w = (const uint64_t *)(const void *)r->records;
    size_t nw = r->records_len / 8, at = 0, n = 0;
    while (at + 6 <= nw) {
        const uint64_t *h = w + at;
        if (v) {
            v[n].t.dtype = (sts_dtype)h[0];
            v[n].t.ndim = (uint32_t)h[1];
            v[n].t.nblocks = (size_t)h[2];
            v[n].file0 = (uint32_t)h[3];
            v[n].t.nbytes = h[4];
            v[n].t.shape = h + 6;
            v[n].t.name = (const char *)(h + 6 + h[1]);
        }
        at += 6 + (size_t)h[1] + (size_t)(h[5] / 8 + 1);
        n++;
    }
    return n;
}

/* Local: every tensor's summary into the table, in name order; own_of maps to own. */
static int make_table(sts_reader *r, sts_diag *diag)
{
    int rc = STS_OK;
    size_t n = decode_summaries(r, NULL);
    summ *v = sts__malloc_array(n + 1, sizeof *v);
    r->tensors = sts__calloc_array(n + 1, sizeof *r->tensors);
    r->file0 = sts__malloc_array(n + 1, sizeof *r->file0);
    r->own_of = sts__malloc_array(n + 1, sizeof *r->own_of);
    STS_GOTO_IF(!v || !r->tensors || !r->file0 || !r->own_of, diag, STS_E_NOMEM, "out of memory");
    decode_summaries(r, v);
    qsort(v, n, sizeof *v, cmp_summ);
    for (size_t i = 0; i < n; i++) {
        r->tensors[i] = v[i].t;
        r->file0[i] = v[i].file0;
        r->own_of[i] = SIZE_MAX;
    }
    r->ntensors = n;
    for (size_t j = 0; j < r->own.ntensors; j++) {
        long t = sts_reader_find(r, r->own.tensors[j].name);
        STS_GOTO_IF(t < 0, diag, STS_E_INTERNAL, "tensor '%s' lost its summary",
                    r->own.tensors[j].name);
        r->own_of[t] = j;
    }
done:
    free(v);
    return rc;
}

/* Collective, agreed: every owner's summaries to every rank. */
static int share_summaries(sts_reader *r, sts_diag *diag)
{
    int rc = STS_OK;
    sts_bytes b = {NULL, 0, 0};
    uint64_t *start = sts__malloc_array((size_t)r->nranks, sizeof *start);
    uint64_t *len = sts__malloc_array((size_t)r->nranks, sizeof *len);
    if (!start || !len || pack_summaries(r, &b) != STS_OK)
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    rc = sts__exchange_allgather(r->comm, rc, &b, &r->records, start, len, diag);
    if (rc == STS_OK)
        r->records_len = (size_t)sts__exchange_compact(r->records, start, len, r->nranks);
    if (rc == STS_OK)
        rc = make_table(r, diag);
    rc = sts__mpiio_agree(r->comm, rc, diag);
    sts__bytes_free(&b);
    free(start);
    free(len);
    return rc;
}

int sts__reader_meta_open(sts_reader *r, int rc, sts_bytes *mine, const char *path, sts_diag *diag)
{
    size_t len = 0;
    sts__rfail f = {0, "", 0};
    rc = send_to_owners(r, rc, mine, &len, diag);
    if (rc != STS_OK)
        return rc; /* agreed */
    rc = sts__reader_table(r, r->own_records, len, &r->own, &f, diag);
    if (rc != STS_OK)
        sts__diag_prefix(diag, "%s", path);
    rc = agree_first(r, rc, &f, diag);
    if (rc != STS_OK)
        return rc;
    return share_summaries(r, diag);
}

/* ---- fetching a view ------------------------------------------------------------ */

void sts__reader_meta_drop(sts_reader *r)
{
    if (!r->dist)
        return;
    free(r->first);
    free(r->blocks);
    free(r->fetched);
    r->first = NULL;
    r->blocks = NULL;
    r->fetched = NULL;
}

void sts__reader_meta_free(sts_reader *r)
{
    sts__reader_meta_drop(r);
    sts__reader_table_free(&r->own);
    free(r->own_records);
    free(r->own_of);
    free(r->file0);
}

static int tensor_owner(const sts_reader *r, size_t tix)
{
    const char *name = r->tensors[tix].name;
    return sts__meta_owner(name, strlen(name), r->nranks);
}

/* Local.  Request records [tix, off[nd], shape[nd]] grouped by owner (scount[o] bytes each). */
static int pack_requests(const sts_reader *r, const sts__rbox *bx, size_t n, sts_bytes *out,
                         uint64_t *scount)
{
    uint64_t *pos = sts__calloc_array((size_t)r->nranks, sizeof *pos);
    if (!pos)
        return STS_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        scount[tensor_owner(r, bx[i].tix)] += 8 * (1 + 2 * (uint64_t)r->tensors[bx[i].tix].ndim);
    for (int o = 1; o < r->nranks; o++)
        pos[o] = pos[o - 1] + scount[o - 1];
    out->len = out->cap = (size_t)(pos[r->nranks - 1] + scount[r->nranks - 1]);
    out->buf = malloc(out->len + 8);
    if (!out->buf) {
        free(pos);
        return STS_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t nd = r->tensors[bx[i].tix].ndim;
        int o = tensor_owner(r, bx[i].tix);
        uint64_t *d = (uint64_t *)(void *)(out->buf + pos[o]), tix = bx[i].tix;
        memcpy(d, &tix, 8);
        memcpy(d + 1, bx[i].off, nd * 8);
        memcpy(d + 1 + nd, bx[i].shape, nd * 8);
        pos[o] += 8 * (1 + 2 * (uint64_t)nd);
    }
    free(pos);
    return STS_OK;
}

static int meets(const sts__rblock *b, uint32_t nd, const uint64_t *off, const uint64_t *shape)
{
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t lo = off[d] > b->offsets[d] ? off[d] : b->offsets[d];
        uint64_t qe = off[d] + shape[d], be = b->offsets[d] + b->shape[d];
        if (lo >= (qe < be ? qe : be))
            return 0;
    }
    return 1;
}

/* Reply: [tix, index within the tensor, file, data offset, offsets[nd], shape[nd]]. */
static int put_reply(sts_bytes *b, uint64_t tix, uint64_t k, const sts__rblock *blk, uint32_t nd)
{
    uint64_t head[4] = {tix, k, blk->file, blk->data_off};
    int rc = sts__bytes_put(b, head, sizeof head);
    if (rc == STS_OK)
        rc = sts__bytes_put(b, blk->offsets, nd * sizeof(uint64_t));
    if (rc == STS_OK)
        rc = sts__bytes_put(b, blk->shape, nd * sizeof(uint64_t));
    return rc;
}

/*
 * Local (owner side).  Answers rank k's requests, part k of the received
 * buffer, with every owned block that meets one of them, each once: stamp[]
 * remembers the last rank a block went to.
 */
static int serve(const sts_reader *r, const unsigned char *all, const uint64_t *start,
                 const uint64_t *len, sts_bytes *out, uint64_t *scount, int *stamp, sts_diag *diag)
{
    for (int k = 0; k < r->nranks; k++) {
        const uint64_t *w = (const uint64_t *)(const void *)(all + start[k]);
        size_t nw = (size_t)(len[k] / 8), at = 0, before = out->len;
        while (at < nw) {
            uint64_t tix = w[at];
            size_t j;
            uint32_t nd;
            if (tix >= r->ntensors || r->own_of[tix] == SIZE_MAX ||
                nw - at < 1 + 2 * (size_t)r->tensors[tix].ndim)
                return sts__fail(diag, STS_E_INTERNAL, "malformed block request from rank %d", k);
            j = r->own_of[tix];
            nd = r->tensors[tix].ndim;
            for (size_t b = r->own.first[j]; b < r->own.first[j + 1]; b++) {
                if (stamp[b] == k + 1 || !meets(&r->own.blocks[b], nd, w + at + 1, w + at + 1 + nd))
                    continue;
                stamp[b] = k + 1;
                if (put_reply(out, tix, b - r->own.first[j], &r->own.blocks[b], nd) != STS_OK)
                    return sts__fail(diag, STS_E_NOMEM, "out of memory");
            }
            at += 1 + 2 * (size_t)nd;
        }
        scount[k] = out->len - before;
    }
    return STS_OK;
}

typedef struct fblock {
    uint64_t tix, k;
    sts__rblock b;
} fblock;

static int cmp_fblock(const void *pa, const void *pb)
{
    const fblock *a = pa, *b = pb;
    if (a->tix != b->tix)
        return a->tix < b->tix ? -1 : 1;
    return a->k < b->k ? -1 : (a->k > b->k);
}

/* Local.  The replies (len bytes at r->fetched) become the view, in table order. */
static int make_view(sts_reader *r, size_t len, sts_diag *diag)
{
    int rc = STS_OK;
    const uint64_t *w = (const uint64_t *)(const void *)r->fetched;
    size_t nw = len / 8, n = 0, at;
    fblock *v = NULL;
    for (at = 0; at + 4 <= nw && w[at] < r->ntensors; n++)
        at += 4 + 2 * (size_t)r->tensors[w[at]].ndim;
    STS_GOTO_IF(at != nw, diag, STS_E_INTERNAL, "malformed block reply");
    v = sts__malloc_array(n + 1, sizeof *v);
    r->first = sts__calloc_array(r->ntensors + 1, sizeof *r->first);
    r->blocks = sts__malloc_array(n + 1, sizeof *r->blocks);
    STS_GOTO_IF(!v || !r->first || !r->blocks, diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0, a = 0; i < n; i++) {
        uint32_t nd = r->tensors[w[a]].ndim;
        v[i] = (fblock){w[a], w[a + 1], {(uint32_t)w[a + 2], w[a + 3], w + a + 4, w + a + 4 + nd}};
        a += 4 + 2 * (size_t)nd;
    }
    qsort(v, n, sizeof *v, cmp_fblock);
    for (size_t i = 0; i < n; i++) {
        r->blocks[i] = v[i].b;
        r->first[v[i].tix + 1]++;
    }
    for (size_t t = 0; t < r->ntensors; t++)
        r->first[t + 1] += r->first[t];
done:
    free(v);
    return rc;
}

int sts__reader_meta_fetch(sts_reader *r, int rc, const sts__rbox *boxes, size_t n, sts_diag *diag)
{
    sts_bytes reqs = {NULL, 0, 0}, replies = {NULL, 0, 0};
    unsigned char *in = NULL;
    int *stamp = NULL;
    size_t np = (size_t)r->nranks;
    /* Request counts, where parts arrive and their lengths, reply counts. */
    uint64_t *cnt = sts__calloc_array(4 * np, sizeof *cnt);
    uint64_t *sreq = cnt, *rstart = cnt ? cnt + np : NULL, *rlen = cnt ? cnt + 2 * np : NULL;
    uint64_t *srep = cnt ? cnt + 3 * np : NULL;
    sts__reader_meta_drop(r);
    if (rc == STS_OK && (!cnt || pack_requests(r, boxes, n, &reqs, sreq) != STS_OK))
        rc = sts__fail(diag, STS_E_NOMEM, "out of memory");
    rc = sts__exchange_alltoall(r->comm, rc, &reqs, sreq, &in, rstart, rlen, diag);
    if (rc == STS_OK) {
        stamp = sts__calloc_array(r->own.ntensors ? r->own.first[r->own.ntensors] + 1 : 1,
                                  sizeof *stamp);
        rc = stamp ? serve(r, in, rstart, rlen, &replies, srep, stamp, diag)
                   : sts__fail(diag, STS_E_NOMEM, "out of memory");
    }
    free(in);
    rc = sts__exchange_alltoall(r->comm, rc, &replies, srep, &r->fetched, rstart, rlen, diag);
    if (rc == STS_OK)
        rc = make_view(r, (size_t)sts__exchange_compact(r->fetched, rstart, rlen, r->nranks), diag);
    rc = sts__mpiio_agree(r->comm, rc, diag);
    if (rc != STS_OK)
        sts__reader_meta_drop(r);
    sts__bytes_free(&reqs);
    sts__bytes_free(&replies);
    free(stamp);
    free(cnt);
    return rc;
}
