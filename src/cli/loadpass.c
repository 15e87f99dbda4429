/*
 * loadpass.c - the offset-read pass of `stshard load` and `stshard bench`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "loadpass.h"

/* ---- verification --------------------------------------------------------- */

/* Compares a chunk with the generator; records the first differing element. */
static void verify_chunk(uint64_t seed, const share_block *b, const uint64_t *off,
                         const uint64_t *shape, const unsigned char *got, uint64_t bytes,
                         unsigned char *want, load_pass *p)
{
    const sts_global_tensor *t = b->t;
    uint64_t esize = sts_dtype_bits(t->dtype) / 8;
    if (sts_dtype_bits(t->dtype) % 8 != 0) {
        p->unchecked += bytes;
        return;
    }
    model_fill(seed, model_name_key(t->name), t->dtype, t->ndim, t->shape, off, shape, want);
    p->elements += bytes / esize;
    if (memcmp(want, got, bytes) == 0)
        return;
    for (uint64_t i = 0; i < bytes / esize; i++) {
        if (memcmp(want + i * esize, got + i * esize, esize) == 0)
            continue;
        if (p->mismatches == 0)
            snprintf(p->first_bad, sizeof p->first_bad,
                     "tensor '%s', element %llu of the block at offset [%llu%s]", t->name,
                     (unsigned long long)i, (unsigned long long)(t->ndim ? off[0] : 0),
                     t->ndim > 1 ? ", ..." : "");
        p->mismatches++;
    }
}

/* ---- the offset-read pass --------------------------------------------------- */

/* Grows *buf to hold need bytes; 0 or -1. */
static int ensure(unsigned char **buf, uint64_t *cap, uint64_t need)
{
    unsigned char *p;
    if (need <= *cap)
        return 0;
    p = realloc(*buf, need);
    if (!p)
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

/* Requests for a round's chunks, packed back to back in the arena; at[i] is chunk i's place. */
static void make_reqs(const share_chunk *c, size_t n, unsigned char *arena, sts_read_req *reqs,
                      uint64_t *at)
{
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const sts_global_tensor *t = c[i].b->t;
        reqs[i].name = t->name;
        reqs[i].dtype = t->dtype;
        reqs[i].ndim = t->ndim;
        reqs[i].offsets = c[i].off;
        reqs[i].shape = c[i].shape;
        reqs[i].buf = arena + pos;
        at[i] = pos;
        pos += c[i].bytes;
    }
}

long long load_read_rchar(void)
{
    char line[128];
    long long v = 0;
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "rchar:", 6) == 0)
            v = atoll(line + 6);
    fclose(f);
    return v;
}

#define ROUND_CAP 4096

/*
 * Collective.  Rounds are taken in lock step: sts_reader_read is collective
 * (ranks may read for each other in it), so a rank whose share is done joins
 * the remaining rounds with no requests.
 */
int load_pass_run(MPI_Comm comm, sts_reader *r, const share_block *bl, size_t nb, uint64_t batch,
                  int check, uint64_t seed, load_bufs *m, load_pass *p, char *err, size_t errlen)
{
    share_walk w;
    sts_read_stats s0, s1;
    long long k0 = load_read_rchar();
    int rc = STS_OK;
    double t0 = MPI_Wtime();
    share_walk_init(&w, bl, nb, batch, 0);
    sts_reader_stats(r, &s0);
    while (share_round_go(comm, rc == STS_OK && share_walk_more(&w), rc != STS_OK)) {
        uint64_t used = 0;
        size_t n = 0;
        int rrc;
        if (share_walk_more(&w))
            n = share_walk_round(&w, m->chunks, ROUND_CAP, &used);
        if (ensure(&m->arena, &m->arena_cap, used) != 0 ||
            (check && ensure(&m->want, &m->want_cap, used) != 0)) {
            snprintf(err, errlen, "out of memory for a read round of %llu bytes",
                     (unsigned long long)used);
            rc = STS_E_NOMEM;
            n = 0; /* still joins the read; the next round's start stops every rank */
        }
        make_reqs(m->chunks, n, m->arena, m->reqs, m->at);
        rrc = sts_reader_read(r, m->reqs, n);
        if (rrc != STS_OK) {
            rc = rrc;
            snprintf(err, errlen, "%s", sts_reader_errmsg(r));
            break; /* agreed by the read: every rank leaves in this same round */
        }
        if (check && rc == STS_OK) {
            /* Verification is not reading: keep it out of the timed part. */
            double v0 = MPI_Wtime();
            for (size_t i = 0; i < n; i++)
                verify_chunk(seed, m->chunks[i].b, m->chunks[i].off, m->chunks[i].shape,
                             m->arena + m->at[i], m->chunks[i].bytes, m->want, p);
            t0 += MPI_Wtime() - v0;
        }
    }
    p->seconds = MPI_Wtime() - t0;
    sts_reader_stats(r, &s1);
    p->needed = s1.bytes_needed - s0.bytes_needed;
    p->read = s1.bytes_read - s0.bytes_read;
    p->received = s1.bytes_received - s0.bytes_received;
    p->transfers = s1.transfers - s0.transfers;
    p->rchar = (uint64_t)(load_read_rchar() - k0);
    return share_agree(comm, rc, err, errlen);
}

int load_bufs_init(MPI_Comm comm, load_bufs *m, uint64_t batch, char *err, size_t errlen)
{
    int ok, all = 0;
    memset(m, 0, sizeof *m);
    m->chunks = calloc(ROUND_CAP, sizeof *m->chunks);
    m->reqs = calloc(ROUND_CAP, sizeof *m->reqs);
    m->at = calloc(ROUND_CAP, sizeof *m->at);
    m->arena = malloc(batch);
    m->arena_cap = batch;
    ok = m->chunks && m->reqs && m->at && m->arena;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
    if (!all) {
        snprintf(err, errlen, "out of memory for a %llu-byte batch", (unsigned long long)batch);
        return STS_E_NOMEM;
    }
    memset(m->arena, 0, batch);
    return STS_OK;
}

void load_bufs_free(load_bufs *m)
{
    free(m->chunks);
    free(m->reqs);
    free(m->at);
    free(m->arena);
    free(m->want);
    memset(m, 0, sizeof *m);
}

void load_report_mismatch(MPI_Comm comm, const char *cmd, const load_pass *p)
{
    int me = 0, mine, first = 0;
    MPI_Comm_rank(comm, &me);
    mine = p->mismatches ? me : 1 << 30;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (me == first)
        fprintf(stderr,
                "stshard %s: DataMismatch: %llu elements differ from the generator on rank "
                "%d; first: %s\n",
                cmd, (unsigned long long)p->mismatches, me, p->first_bad);
}
