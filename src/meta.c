/*
 * meta.c - the distributed metadata plane of a consolidation and of a direct
 * save (see meta.h).
 *
 * Four collective steps, each ending in an error agreement:
 *
 *  1. partition  every block record goes to the owner of its tensor
 *                (MPI_Alltoallv); the owner is a hash of the name.
 *  2. check      each owner sorts its records into input order and runs the
 *                planner's first stage on them (plan.c).  Of all ranks'
 *                errors the one first in input order wins, so the message is
 *                the one a single rank planning everything would give.
 *  3. summaries  one summary per tensor (name, dtype, global shape) goes to
 *                every rank (MPI_Allgatherv); every rank lays out the same
 *                plan from them (plan_layout.c).
 *  4. fetch      each rank asks the owners of the tensors its share of the
 *                output stream touches for their checked blocks: keys out,
 *                block records back (two MPI_Alltoallv).
 *
 * A direct save (sts_meta_save) adds a step between 2 and 3: each owner
 * tells every source which of its records were kept (one byte a record, one
 * MPI_Alltoallv).  Its owners also set per-tensor flags in the summaries,
 * and step 4 fetches the tensors the flags select instead of a share.
 *
 * With B block records, T tensors and P ranks, a rank holds about B/P
 * records as an owner and B/P fetched ones (plus the blocks of at most two
 * tensors cut by its range ends), and T summaries.  Traffic per rank: B/P
 * records twice (steps 1 and 4) and T summaries; in all, P copies of the
 * summaries, which is the only part that grows with P.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "mpiio.h"

/*
 * Block record (8-byte aligned fields): u64 data_off, u32 file, u32 ordinal,
 * u32 name_len, u32 dtype, u32 ndim, u32 declared (0 or 1), u64 offsets[ndim],
 * u64 shape[ndim], u64 declared global shape[ndim] if declared, name + NUL
 * padded to 8.
 */
#define REC_HEAD 32

/*
 * Summary: u64 key, u64 nbytes, u32 dtype, u32 ndim, u32 name_len,
 * u32 blocks (saturated: it only weighs the rank shares), u32 flags, u32 0,
 * u64 shape[ndim], name + NUL padded to 8.
 */
#define SUM_HEAD 40

size_t sts__meta_record_bytes(uint32_t ndim, size_t name_len)
{
    return REC_HEAD + 16 * (size_t)ndim + sts__bytes_str_space(name_len);
}

size_t sts__meta_summary_bytes(uint32_t ndim, size_t name_len)
{
    return SUM_HEAD + 8 * (size_t)ndim + sts__bytes_str_space(name_len);
}

/* Where an owned record came from: its source rank and its place among that rank's records. */
typedef struct origin {
    int src;
    uint64_t seq;
} origin;

typedef struct meta_run {
    MPI_Comm comm;
    int me, np;
    const sts_plan_opts *o;
    sts_meta_save *sv; /* a direct save's changes, or NULL */
    sts_diag *diag;
    int *rec_owner;       /* with sv: the owner of each of this rank's records, in recs order */
    size_t nrecs;         /* this rank's records */
    origin *origins;      /* with sv: per owned record in key order */
    uint64_t *nfrom;      /* with sv: records received from each rank */
    unsigned char *owned; /* step 1: the records of this rank's tensors */
    uint64_t *start, *len, *scount;
    sts_plan_block *blocks; /* the owned records in key order */
    uint64_t *keys;
    size_t nblocks;
    sts_plan_groups g; /* step 2 */
    /* After step 3 the owned records are dropped; the replies of step 4 are kept:
     * tensor i (in key order) has key tkey[i] and reply bytes store[soff[i]..soff[i+1]). */
    uint64_t *tkey, *soff;
    unsigned char *store;
    size_t nowned;
} meta_run;

int sts__meta_put_block(sts_bytes *k, uint32_t file, uint32_t ordinal, uint64_t data_off,
                        const char *name, size_t name_len, sts_dtype dtype, uint32_t ndim,
                        const uint64_t *offsets, const uint64_t *shape, const uint64_t *declared)
{
    uint32_t w[6] = {file, ordinal, (uint32_t)name_len, (uint32_t)dtype, ndim, declared != NULL};
    if (sts__bytes_put_u64(k, data_off) || sts__bytes_put(k, w, sizeof w) ||
        sts__bytes_put(k, offsets, 8 * (size_t)ndim) ||
        sts__bytes_put(k, shape, 8 * (size_t)ndim) ||
        (declared && sts__bytes_put(k, declared, 8 * (size_t)ndim)) ||
        sts__bytes_put_str(k, name, name_len))
        return STS_E_NOMEM;
    return STS_OK;
}

/* Decodes the record at p; returns its size, or 0 if it runs past end. */
static size_t rec_view(const unsigned char *p, const unsigned char *end, sts_plan_block *b,
                       uint64_t *key)
{
    uint32_t w[6];
    size_t size;
    if ((size_t)(end - p) < REC_HEAD)
        return 0;
    memcpy(&b->data_off, p, 8);
    memcpy(w, p + 8, sizeof w);
    if (w[4] > STS_PLAN_MAX_NDIM * 1024 || w[2] > UINT32_MAX / 2 || w[5] > 1)
        return 0;
    size = REC_HEAD + (16 + 8 * (size_t)w[5]) * w[4] + sts__bytes_str_space(w[2]);
    if ((size_t)(end - p) < size)
        return 0;
    b->file = w[0];
    b->name_len = w[2];
    b->dtype = (sts_dtype)w[3];
    b->ndim = w[4];
    b->offsets = (const uint64_t *)(const void *)(p + REC_HEAD);
    b->shape = b->offsets + b->ndim;
    b->declared = w[5] ? b->shape + b->ndim : NULL;
    b->name = (const char *)(b->shape + (1 + w[5]) * (size_t)b->ndim);
    *key = (uint64_t)w[0] << 32 | w[1];
    return size;
}

/*
 * The owner of a tensor.  The name table (plan.c) indexes by the low bits of
 * the same hash; mixing first keeps an owner's names from sharing low bits,
 * which would crowd its table when P is a power of two.
 */
int sts__meta_owner(const char *name, size_t len, int np)
{
    uint64_t h = sts__plan_hash(name, len);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (int)(h % (uint64_t)np);
}

/*
 * Collective, agreed: the first error in input order wins.  Every failing
 * rank offers its key; the rank with the smallest one (then the lowest
 * rank) is the only one that presents its error to sts__mpiio_agree.
 */
static int agree_first(meta_run *X, int rc, uint64_t key)
{
    uint64_t mine = rc == STS_OK ? UINT64_MAX : key, first = 0;
    int cand, who = 0;
    STS_MPI_CALL(X->diag, MPI_Allreduce, (&mine, &first, 1, MPI_UINT64_T, MPI_MIN, X->comm));
    cand = rc != STS_OK && mine == first ? X->me : INT_MAX;
    STS_MPI_CALL(X->diag, MPI_Allreduce, (&cand, &who, 1, MPI_INT, MPI_MIN, X->comm));
    rc = sts__mpiio_agree(X->comm, X->me == who ? rc : STS_OK, X->diag);
done:
    return rc;
}

/*
 * Collective, agreed (exchange.c): mine holds the parts for ranks 0..np-1
 * back to back, scount[r] bytes each, every part a multiple of 8 bytes.
 */
static int alltoall(meta_run *X, int rc, unsigned char *mine, const uint64_t *scount,
                    unsigned char **all, uint64_t *rstart, uint64_t *rlen)
{
    uint64_t total = 0;
    sts_bytes b;
    for (int r = 0; rc == STS_OK && r < X->np; r++)
        total += scount[r];
    b.buf = mine;
    b.len = b.cap = (size_t)total;
    return sts__exchange_alltoall(X->comm, rc, &b, scount, all, rstart, rlen, X->diag);
}

/* ---- 1. partition ----------------------------------------------------------- */

/* Walks recs: with out NULL sums each owner's bytes into X->scount, else copies to pos[owner]. */
static int route(meta_run *X, const sts_bytes *recs, unsigned char *out, uint64_t *pos)
{
    const unsigned char *p = recs->buf, *end = recs->buf ? recs->buf + recs->len : NULL;
    while (p < end) {
        sts_plan_block b;
        uint64_t key;
        size_t size = rec_view(p, end, &b, &key);
        int o;
        if (size == 0)
            return sts__fail(X->diag, STS_E_INTERNAL, "corrupt block record");
        o = sts__meta_owner(b.name, b.name_len, X->np);
        if (out) {
            memcpy(out + pos[o], p, size);
            pos[o] += size;
            if (X->rec_owner)
                X->rec_owner[X->nrecs] = o;
        } else {
            X->scount[o] += size;
        }
        X->nrecs += out != NULL;
        p += size;
    }
    return STS_OK;
}

/* With a direct save: room for the owner of every record (counted by the first route). */
static int owners_room(meta_run *X, const sts_bytes *recs)
{
    size_t n = 0;
    const unsigned char *p = recs->buf, *end = recs->buf ? recs->buf + recs->len : NULL;
    if (!X->sv)
        return STS_OK;
    while (p < end) {
        sts_plan_block b;
        uint64_t key;
        p += rec_view(p, end, &b, &key); /* the first route has checked every record */
        n++;
    }
    X->rec_owner = sts__malloc_array(n ? n : 1, sizeof *X->rec_owner);
    return X->rec_owner ? STS_OK : sts__fail(X->diag, STS_E_NOMEM, "out of memory");
}

static int partition(meta_run *X, sts_bytes *recs)
{
    int rc = STS_OK;
    unsigned char *send = NULL;
    uint64_t *pos = sts__calloc_array((size_t)X->np, sizeof *pos);
    STS_GOTO_IF(!pos, X->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(route(X, recs, NULL, NULL));
    STS_CHECK(owners_room(X, recs));
    for (int r = 1; r < X->np; r++)
        pos[r] = pos[r - 1] + X->scount[r - 1];
    send = malloc(recs->len ? recs->len : 8);
    STS_GOTO_IF(!send, X->diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(route(X, recs, send, pos));
done:
    /* The records now live in send: drop the packed copy before receiving. */
    free(recs->buf);
    memset(recs, 0, sizeof *recs);
    free(pos);
    rc = alltoall(X, rc, send, X->scount, &X->owned, X->start, X->len);
    free(send);
    return rc;
}

/* ---- 2. check ------------------------------------------------------------------ */

typedef struct keyed {
    uint64_t key;
    sts_plan_block b;
    origin from;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    uint64_t x = ((const keyed *)a)->key, y = ((const keyed *)b)->key;
    return x < y ? -1 : x > y;
}

/* Decodes the owned records and sorts them into input order. */
static int sort_owned(meta_run *X)
{
    int rc = STS_OK;
    keyed *v = NULL;
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        for (int r = 0; r < X->np; r++) {
            const unsigned char *p = X->owned + X->start[r], *end = p + X->len[r];
            uint64_t seq = 0;
            while (p < end) {
                keyed k;
                size_t size = rec_view(p, end, &k.b, &k.key);
                STS_GOTO_IF(size == 0, X->diag, STS_E_INTERNAL, "corrupt block record");
                k.from.src = r;
                k.from.seq = seq++;
                if (v)
                    v[n] = k;
                n++;
                p += size;
            }
            if (X->nfrom)
                X->nfrom[r] = seq;
        }
        if (pass == 0) {
            v = sts__malloc_array(n ? n : 1, sizeof *v);
            STS_GOTO_IF(!v, X->diag, STS_E_NOMEM, "out of memory");
        }
    }
    qsort(v, n, sizeof *v, cmp_keyed);
    X->blocks = sts__malloc_array(n ? n : 1, sizeof *X->blocks);
    X->keys = sts__malloc_array(n ? n : 1, sizeof *X->keys);
    if (X->sv)
        X->origins = sts__malloc_array(n ? n : 1, sizeof *X->origins);
    STS_GOTO_IF(!X->blocks || !X->keys || (X->sv && !X->origins), X->diag, STS_E_NOMEM,
                "out of memory");
    for (size_t i = 0; i < n; i++) {
        X->blocks[i] = v[i].b;
        X->keys[i] = v[i].key;
        if (X->origins)
            X->origins[i] = v[i].from;
    }
    X->nblocks = n;
done:
    free(v);
    return rc;
}

static int check(meta_run *X, sts_meta *m)
{
    int rc = sort_owned(X);
    uint64_t key = 0;
    if (rc == STS_OK) {
        rc = sts__plan_group(X->blocks, X->nblocks, X->keys, X->o, &X->g, X->diag);
        key = X->g.fail_key;
    }
    m->blocks_owned = X->nblocks;
    return agree_first(X, rc, key);
}

static void drop_owned(meta_run *X)
{
    free(X->owned);
    free(X->blocks);
    free(X->keys);
    free(X->origins);
    X->owned = NULL;
    X->blocks = NULL;
    X->keys = NULL;
    X->origins = NULL;
    sts__plan_groups_free(&X->g);
}

/*
 * A direct save's sources learn which of their blocks the planner kept
 * (identical duplicates and empty blocks are not): one byte per record, sent
 * back in the order the source sent the records, each part padded to 8.
 */
static int take_verdicts(meta_run *X, const unsigned char *got)
{
    uint64_t *at = sts__calloc_array((size_t)X->np, sizeof *at);
    unsigned char *kept = malloc(X->nrecs ? X->nrecs : 1);
    int rc = STS_OK;
    STS_GOTO_IF(!at || !kept, X->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < X->nrecs; i++) {
        int o = X->rec_owner[i];
        STS_GOTO_IF(at[o] >= X->len[o], X->diag, STS_E_INTERNAL, "short verdict from rank %d", o);
        kept[i] = got[X->start[o] + at[o]++];
    }
    X->sv->kept = kept;
    X->sv->nrecs = X->nrecs;
    kept = NULL;
done:
    free(at);
    free(kept);
    return rc;
}

static int verdicts(meta_run *X)
{
    int rc = STS_OK;
    unsigned char *send = NULL, *got = NULL;
    uint64_t *pos = sts__calloc_array((size_t)X->np, sizeof *pos), total = 0;
    STS_GOTO_IF(!pos, X->diag, STS_E_NOMEM, "out of memory");
    for (int r = 0; r < X->np; r++) {
        X->scount[r] = (X->nfrom[r] + 7) / 8 * 8;
        pos[r] = total;
        total += X->scount[r];
    }
    send = calloc(total ? total : 8, 1);
    STS_GOTO_IF(!send, X->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < X->g.ntensors; t++) {
        const sts_plan_summary *S = &X->g.tensors[t];
        for (size_t j = 0; j < S->nblocks; j++) {
            const origin *from = &X->origins[X->g.order[S->first_block + j]];
            send[pos[from->src] + from->seq] = 1;
        }
    }
done:
    rc = alltoall(X, rc, send, X->scount, &got, X->start, X->len);
    if (rc == STS_OK)
        rc = take_verdicts(X, got);
    if (rc == STS_OK)
        rc = STS_FAULT("meta.verdicts", X->diag);
    free(send);
    free(got);
    free(pos);
    return sts__mpiio_agree(X->comm, rc, X->diag);
}

/*
 * Keeps, of the owned records, only what step 4 sends: per tensor (key
 * order) u64 count, then per distinct block u64 data_off, u64 file,
 * u64 offsets[ndim], u64 shape[ndim].  The records themselves are dropped
 * before the plan is laid out, which is when every rank holds the most.
 */
static int keep_replies(meta_run *X)
{
    int rc = STS_OK;
    sts_bytes k = {NULL, 0, 0};
    size_t n = X->g.ntensors;
    X->tkey = sts__malloc_array(n ? n : 1, sizeof *X->tkey);
    X->soff = sts__malloc_array(n + 1, sizeof *X->soff);
    STS_GOTO_IF(!X->tkey || !X->soff, X->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = 0; t < n; t++) {
        const sts_plan_summary *s = &X->g.tensors[t];
        X->tkey[t] = s->key;
        X->soff[t] = k.len;
        STS_GOTO_IF(sts__bytes_put_u64(&k, s->nblocks), X->diag, STS_E_NOMEM, "out of memory");
        for (size_t j = 0; j < s->nblocks; j++) {
            const sts_plan_block *b = &X->blocks[X->g.order[s->first_block + j]];
            STS_GOTO_IF(sts__bytes_put_u64(&k, b->data_off) || sts__bytes_put_u64(&k, b->file) ||
                            sts__bytes_put(&k, b->offsets, 8 * (size_t)b->ndim) ||
                            sts__bytes_put(&k, b->shape, 8 * (size_t)b->ndim),
                        X->diag, STS_E_NOMEM, "out of memory");
        }
    }
    X->soff[n] = k.len;
    X->nowned = n;
    X->store = k.buf;
    k.buf = NULL;
done:
    free(k.buf);
    return rc;
}

/* ---- 3. summaries --------------------------------------------------------------- */

static int pack_summaries(const meta_run *X, sts_bytes *k)
{
    for (size_t t = 0; t < X->g.ntensors; t++) {
        const sts_plan_summary *s = &X->g.tensors[t];
        /* The block count only weighs the rank shares (plan_chunk.c): saturating is harmless. */
        uint32_t nb = s->nblocks > UINT32_MAX ? UINT32_MAX : (uint32_t)s->nblocks;
        uint32_t fl =
            X->sv && X->sv->flags ? X->sv->flags(X->sv->ctx, s, X->blocks, X->g.order) : 0;
        uint32_t w[6] = {(uint32_t)s->dtype, s->ndim, s->name_len, nb, fl, 0};
        if (sts__bytes_put_u64(k, s->key) || sts__bytes_put_u64(k, s->nbytes) ||
            sts__bytes_put(k, w, sizeof w) || sts__bytes_put(k, s->shape, 8 * (size_t)s->ndim) ||
            sts__bytes_put_str(k, s->name, s->name_len))
            return sts__fail(X->diag, STS_E_NOMEM, "out of memory");
    }
    return STS_OK;
}

static int cmp_summary(const void *a, const void *b)
{
    uint64_t x = ((const sts_plan_summary *)a)->key, y = ((const sts_plan_summary *)b)->key;
    return x < y ? -1 : x > y;
}

/* Decodes every rank's summaries (with out NULL: counts them). */
static size_t walk_summaries(const meta_run *X, const unsigned char *all, sts_plan_summary *out)
{
    size_t n = 0;
    for (int r = 0; r < X->np; r++) {
        const unsigned char *p = all + X->start[r], *end = p + X->len[r];
        while (p < end) {
            uint32_t w[6];
            size_t size;
            if ((size_t)(end - p) < SUM_HEAD)
                return SIZE_MAX;
            memcpy(w, p + 16, sizeof w);
            if (w[1] > STS_PLAN_MAX_NDIM || w[2] > UINT32_MAX / 2)
                return SIZE_MAX;
            size = SUM_HEAD + 8 * (size_t)w[1] + sts__bytes_str_space(w[2]);
            if ((size_t)(end - p) < size)
                return SIZE_MAX;
            if (out) {
                sts_plan_summary *s = &out[n];
                memset(s, 0, sizeof *s);
                memcpy(&s->key, p, 8);
                memcpy(&s->nbytes, p + 8, 8);
                s->dtype = (sts_dtype)w[0];
                s->ndim = w[1];
                s->name_len = w[2];
                s->shape = (const uint64_t *)(const void *)(p + SUM_HEAD);
                s->name = (const char *)(s->shape + s->ndim);
                s->cost_blocks = w[3];
                s->flags = w[4];
            }
            n++;
            p += size;
        }
    }
    return n;
}

static int summaries(meta_run *X, sts_meta *m)
{
    int rc = STS_OK;
    sts_bytes k = {NULL, 0, 0};
    sts_plan_summary *sums = NULL;
    size_t n;
    rc = pack_summaries(X, &k);
    if (rc == STS_OK)
        rc = keep_replies(X);
    drop_owned(X);
    rc = sts__exchange_allgather(X->comm, rc, &k, &m->summaries, X->start, X->len, X->diag);
    STS_CHECK(rc);
    n = walk_summaries(X, m->summaries, NULL);
    STS_GOTO_IF(n == SIZE_MAX, X->diag, STS_E_INTERNAL, "corrupt tensor summary");
    sums = sts__malloc_array(n ? n : 1, sizeof *sums);
    STS_GOTO_IF(!sums, X->diag, STS_E_NOMEM, "out of memory");
    walk_summaries(X, m->summaries, sums);
    qsort(sums, n, sizeof *sums, cmp_summary);
    /* Layout errors (mapping, encoding) are the same on every rank; memory is not.
     * The plan points into m->summaries, not into sums. */
    rc = sts__plan_layout_from_summaries(sums, n, X->o, &m->plan, X->diag);
done:
    free(sums);
    free(k.buf);
    return sts__mpiio_agree(X->comm, rc, X->diag);
}

/* ---- 4. fetch ------------------------------------------------------------------ */

/* The tensors [*ta, *tb) of the plan that intersect this rank's stream range. */
static void share_tensors(const meta_run *X, const sts_plan *p, size_t *ta, size_t *tb)
{
    uint64_t lo, hi;
    size_t a = 0, b = p->ntensors;
    sts__plan_chunk_rank_range(p, X->me, X->np, &lo, &hi);
    while (a < b) { /* as sts__plan_chunk_iter_init: the first tensor ending after lo */
        size_t mid = a + (b - a) / 2;
        if (p->tensors[mid].stream_off + p->tensors[mid].nbytes <= lo)
            a = mid + 1;
        else
            b = mid;
    }
    *ta = a;
    for (b = a; b < p->ntensors && p->tensors[b].stream_off < hi; b++)
        ;
    *tb = b;
}

/* A direct save wants the tensors its mask selects; a consolidation every one of its share. */
static int wanted(const meta_run *X, const sts_plan_tensor *t)
{
    return t->nbytes > 0 && (!X->sv || (t->flags & X->sv->fetch));
}

/* Keys of the wanted tensors, grouped by owner (tensor order within a group). */
static int pack_requests(meta_run *X, const sts_meta *m, size_t ta, size_t tb, uint64_t **out)
{
    const sts_plan *p = m->plan;
    uint64_t *pos = sts__calloc_array((size_t)X->np, sizeof *pos), total = 0;
    int rc = STS_OK;
    *out = NULL;
    STS_GOTO_IF(!pos, X->diag, STS_E_NOMEM, "out of memory");
    memset(X->scount, 0, (size_t)X->np * sizeof *X->scount);
    for (size_t t = ta; t < tb; t++)
        if (wanted(X, &p->tensors[t]))
            X->scount[sts__meta_owner(p->tensors[t].name, p->tensors[t].name_len, X->np)] += 8;
    for (int r = 0; r < X->np; r++) {
        pos[r] = total;
        total += X->scount[r];
    }
    *out = malloc(total ? total : 8);
    STS_GOTO_IF(!*out, X->diag, STS_E_NOMEM, "out of memory");
    for (size_t t = ta; t < tb; t++) {
        const sts_plan_tensor *T = &p->tensors[t];
        int o;
        if (!wanted(X, T))
            continue;
        o = sts__meta_owner(T->name, T->name_len, X->np);
        (*out)[pos[o] / 8] = T->key;
        pos[o] += 8;
    }
done:
    free(pos);
    return rc;
}

/* The index of the owned tensor with this key, or SIZE_MAX. */
static size_t find_owned(const meta_run *X, uint64_t key)
{
    size_t a = 0, b = X->nowned;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (X->tkey[mid] < key)
            a = mid + 1;
        else
            b = mid;
    }
    return a < X->nowned && X->tkey[a] == key ? a : SIZE_MAX;
}

static int pack_replies(meta_run *X, const unsigned char *req, const uint64_t *rstart,
                        const uint64_t *rlen, sts_bytes *k)
{
    memset(X->scount, 0, (size_t)X->np * sizeof *X->scount);
    for (int r = 0; r < X->np; r++) {
        size_t before = k->len;
        for (uint64_t i = 0; i < rlen[r] / 8; i++) {
            uint64_t key;
            size_t t;
            memcpy(&key, req + rstart[r] + 8 * i, 8);
            t = find_owned(X, key);
            if (t == SIZE_MAX)
                return sts__fail(X->diag, STS_E_INTERNAL, "rank %d asked for an unknown tensor", r);
            if (sts__bytes_put(k, X->store + X->soff[t], X->soff[t + 1] - X->soff[t]) != STS_OK)
                return sts__fail(X->diag, STS_E_NOMEM, "out of memory");
        }
        X->scount[r] = k->len - before;
    }
    return STS_OK;
}

/* Walks the replies in request order; with fill, stores the blocks into m. */
static int take_replies(meta_run *X, sts_meta *m, size_t ta, size_t tb, int fill)
{
    sts_plan *p = m->plan;
    int rc = STS_OK;
    size_t n = 0;
    uint64_t *cur = sts__malloc_array((size_t)X->np, sizeof *cur);
    STS_GOTO_IF(!cur, X->diag, STS_E_NOMEM, "out of memory");
    memcpy(cur, X->start, (size_t)X->np * sizeof *cur);
    for (size_t t = ta; t < tb; t++) {
        sts_plan_tensor *T = &p->tensors[t];
        int o = sts__meta_owner(T->name, T->name_len, X->np);
        uint64_t cnt, end = X->start[o] + X->len[o], rec = 16 + 16 * (uint64_t)T->ndim;
        if (!wanted(X, T))
            continue;
        STS_GOTO_IF(end - cur[o] < 8, X->diag, STS_E_INTERNAL, "short block reply from rank %d", o);
        memcpy(&cnt, m->fetched + cur[o], 8);
        cur[o] += 8;
        STS_GOTO_IF(cnt > (end - cur[o]) / rec, X->diag, STS_E_INTERNAL,
                    "short block reply from rank %d", o);
        if (fill) {
            T->first_block = n;
            T->nblocks = (size_t)cnt;
            for (uint64_t j = 0; j < cnt; j++, n++) {
                const unsigned char *q = m->fetched + cur[o] + j * rec;
                sts_plan_block *b = &m->blocks[n];
                uint64_t file;
                memcpy(&b->data_off, q, 8);
                memcpy(&file, q + 8, 8);
                b->file = (uint32_t)file;
                b->name = T->name;
                b->name_len = T->name_len;
                b->dtype = T->dtype;
                b->ndim = T->ndim;
                b->offsets = (const uint64_t *)(const void *)(q + 16);
                b->shape = b->offsets + T->ndim;
                p->order[n] = n;
            }
        } else {
            n += (size_t)cnt;
        }
        cur[o] += cnt * rec;
    }
    m->blocks_fetched = n;
done:
    free(cur);
    return rc;
}

static int fetch(meta_run *X, sts_meta *m)
{
    int rc;
    size_t ta, tb;
    uint64_t *req = NULL;
    unsigned char *got = NULL;
    sts_bytes k = {NULL, 0, 0};
    ta = 0;
    tb = m->plan->ntensors;
    if (!X->sv)
        share_tensors(X, m->plan, &ta, &tb);
    rc = pack_requests(X, m, ta, tb, &req);
    rc = alltoall(X, rc, (unsigned char *)req, X->scount, &got, X->start, X->len);
    STS_CHECK(rc);
    rc = pack_replies(X, got, X->start, X->len, &k);
    free(X->store);
    X->store = NULL;
    rc = alltoall(X, rc, k.buf, X->scount, &m->fetched, X->start, X->len);
    STS_CHECK(rc);
    free(k.buf);
    k.buf = NULL;
    rc = take_replies(X, m, ta, tb, 0);
    if (rc == STS_OK) {
        size_t n = m->blocks_fetched;
        m->blocks = sts__malloc_array(n ? n : 1, sizeof *m->blocks);
        m->plan->order = sts__malloc_array(n ? n : 1, sizeof *m->plan->order);
        rc = m->blocks && m->plan->order ? take_replies(X, m, ta, tb, 1)
                                         : sts__fail(X->diag, STS_E_NOMEM, "out of memory");
        m->plan->blocks = m->blocks;
        m->plan->nblocks_in = n;
    }
    if (rc == STS_OK)
        rc = STS_FAULT("meta.fetched", X->diag);
    rc = sts__mpiio_agree(X->comm, rc, X->diag);
done:
    free(req);
    free(got);
    free(k.buf);
    return rc;
}

/* ---- entry point ----------------------------------------------------------------- */

int sts__meta_plan(MPI_Comm comm, sts_bytes *recs, const sts_plan_opts *opts, sts_meta_save *save,
                   sts_meta *m, sts_diag *diag)
{
    int rc = STS_OK;
    meta_run X;
    memset(&X, 0, sizeof X);
    memset(m, 0, sizeof *m);
    X.comm = comm;
    X.o = opts;
    X.sv = save;
    X.diag = diag;
    STS_MPI_CALL(diag, MPI_Comm_rank, (comm, &X.me));
    STS_MPI_CALL(diag, MPI_Comm_size, (comm, &X.np));
    X.start = sts__calloc_array((size_t)X.np, sizeof *X.start);
    X.len = sts__calloc_array((size_t)X.np, sizeof *X.len);
    X.scount = sts__calloc_array((size_t)X.np, sizeof *X.scount);
    if (save)
        X.nfrom = sts__calloc_array((size_t)X.np, sizeof *X.nfrom);
    rc = X.start && X.len && X.scount && (!save || X.nfrom)
             ? STS_OK
             : sts__fail(diag, STS_E_NOMEM, "out of memory");
    STS_CHECK(sts__mpiio_agree(comm, rc, diag));
    STS_CHECK(partition(&X, recs));
    STS_CHECK(check(&X, m));
    if (save)
        STS_CHECK(verdicts(&X));
    STS_CHECK(summaries(&X, m));
    STS_CHECK(fetch(&X, m));
done:
    free(recs->buf);
    memset(recs, 0, sizeof *recs);
    drop_owned(&X);
    free(X.tkey);
    free(X.soff);
    free(X.store);
    free(X.start);
    free(X.len);
    free(X.scount);
    free(X.nfrom);
    free(X.rec_owner);
    if (rc != STS_OK) {
        sts__meta_free(m);
        if (save) {
            free(save->kept);
            save->kept = NULL;
        }
    }
    return rc;
}

void sts__meta_free(sts_meta *m)
{
    sts__plan_free(m->plan);
    free(m->summaries);
    free(m->fetched);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}
