/*
 * par_read_xchg_random.c - two-phase reads on random layouts.
 *
 * Each case draws (from a seed every rank shares, so no rank needs to be
 * told) one tensor of 2 or 3 dimensions and a byte dtype, stores it as row
 * blocks with random cut points spread over up to four rank files, and gives
 * every rank requests: a split of the tensor along a random dimension (some
 * ranks asking for the same part, some for nothing), cut again into random
 * row ranges, and now and then a stray box that overlaps the others.  The
 * exchange buffer is a few rows, so that units, rounds and one-row units all
 * occur; it differs between ranks, which the reader must reconcile at open.  Every rank checks
 * every byte it got against the generator, with the exchange on and off; with it on, all ranks
 * together must not read more bytes than with it off.
 *
 *   par_read_xchg_random [CASES] [FIRST_SEED]
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_read_util.h"
#include "test_util.h"

#define MAX_REQ 64

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_in(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(s) % (hi - lo + 1);
}

typedef struct rcase {
    tr_tensor t;
    char name[32];
    tr_block blocks[8];
    int file_of[8];
    size_t nblocks;
    uint64_t off[MAX_REQ][TR_MAX_DIMS], shape[MAX_REQ][TR_MAX_DIMS];
    size_t nreq;
    char buffer[32];
} rcase;

/* Row blocks with random cuts, one per file (a file holds one block of a name), files rotated. */
static void draw_storage(rcase *c, uint64_t *s)
{
    static const sts_dtype dts[] = {STS_F32, STS_BF16, STS_U8, STS_F64, STS_I16};
    tr_tensor *t = &c->t;
    uint64_t rows, at = 0, rot = rng_in(s, 0, 3);
    t->dtype = dts[rng_in(s, 0, 4)];
    t->ndim = (uint32_t)rng_in(s, 2, 3);
    for (uint32_t d = 0; d < t->ndim; d++)
        t->shape[d] = rng_in(s, 1, d == 0 ? 40 : 24);
    t->name = c->name;
    rows = t->shape[0];
    c->nblocks = 0;
    while (at < rows && c->nblocks < 4) {
        tr_block *b = &c->blocks[c->nblocks];
        uint64_t n = c->nblocks == 3 ? rows - at : rng_in(s, 1, rows - at);
        memset(b, 0, sizeof *b);
        b->t = t;
        memcpy(b->shape, t->shape, sizeof b->shape);
        b->off[0] = at;
        b->shape[0] = n;
        c->file_of[c->nblocks] = (int)((c->nblocks + rot) % 4);
        c->nblocks++;
        at += n;
    }
}

static void add_box(rcase *c, const uint64_t *off, const uint64_t *shape)
{
    if (c->nreq == MAX_REQ)
        return;
    memcpy(c->off[c->nreq], off, sizeof c->off[0]);
    memcpy(c->shape[c->nreq], shape, sizeof c->shape[0]);
    c->nreq++;
}

/* Part j of `parts` along dim as this rank's boxes: whole, or cut into row ranges. */
static void add_part(rcase *c, uint64_t *s, uint32_t dim, int j, int parts)
{
    const tr_tensor *t = &c->t;
    uint64_t off[TR_MAX_DIMS] = {0}, shape[TR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    off[dim] = t->shape[dim] * (uint64_t)j / (uint64_t)parts;
    shape[dim] = t->shape[dim] * (uint64_t)(j + 1) / (uint64_t)parts - off[dim];
    if (shape[dim] == 0)
        return;
    if (dim == 0) {
        add_box(c, off, shape);
        return;
    }
    /* Cut into row ranges, as a loader's rounds would. */
    for (uint64_t r = 0, n; r < t->shape[0]; r += n) {
        n = rng_in(s, 1, t->shape[0] - r);
        off[0] = r;
        shape[0] = n;
        add_box(c, off, shape);
    }
}

/*
 * This rank's requests: the tensor split along a random dimension into P or
 * 2P parts, rank k taking parts k, k + P (so one rank alone can tile rows);
 * now and then a rank asks nothing, or rank 0's first part again (identical
 * boxes), and a stray box may overlap the others.
 */
static void draw_requests(rcase *c, uint64_t *s, int me, int P)
{
    const tr_tensor *t = &c->t;
    uint32_t dim = (uint32_t)rng_in(s, 0, t->ndim - 1);
    int parts = P * (int)rng_in(s, 1, 2), choice = 0, stray = 0;
    /* Every rank draws every rank's choices, so the seed stays in step. */
    for (int k = 0; k < P; k++) {
        int ch = (int)rng_in(s, 0, 7); /* 0: nothing, 1: rank 0's first part, else its own */
        int st = rng_in(s, 0, 9) == 0;
        if (k == me)
            choice = ch, stray = st;
    }
    c->nreq = 0;
    if (choice == 1)
        add_part(c, s, dim, 0, parts);
    for (int j = me; choice > 1 && j < parts; j += P)
        add_part(c, s, dim, j, parts);
    if (stray) {
        uint64_t o[TR_MAX_DIMS] = {0}, sh[TR_MAX_DIMS];
        for (uint32_t d = 0; d < t->ndim; d++) {
            o[d] = rng_in(s, 0, t->shape[d] - 1);
            sh[d] = rng_in(s, 1, t->shape[d] - o[d]);
        }
        add_box(c, o, sh);
    }
    /* Drawn after this rank's own draws: ranks differ, and the reader must agree at open. */
    snprintf(c->buffer, sizeof c->buffer, "%llu", (unsigned long long)rng_in(s, 1, 4096));
}

static int write_case(const rcase *c, const char *dir)
{
    char p[300];
    mkdir(dir, 0777);
    for (int f = 0; f < 4; f++) {
        tr_block b[8];
        size_t n = 0;
        for (size_t i = 0; i < c->nblocks; i++)
            if (c->file_of[i] == f)
                b[n++] = c->blocks[i];
        if (n == 0)
            continue;
        snprintf(p, sizeof p, "%s/shard-%05d-model-00001-of-00001.safetensors", dir, f + 1);
        if (tr_write_file(p, b, n, 1) != 0)
            return -1;
    }
    return 0;
}

/* Reads the case with exchange mode x; returns this rank's stats in st. */
static void read_case(MPI_Comm comm, const rcase *c, const char *dir, const char *x,
                      sts_read_stats *st)
{
    sts_reader *r = NULL;
    sts_diag d;
    sts_read_req q[MAX_REQ];
    unsigned char *buf[MAX_REQ] = {NULL};
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_exchange", x);
    MPI_Info_set(info, "stshard_exchange_buffer", c->buffer);
    memset(st, 0, sizeof *st);
    CHECK_OK(tr_reader_open(comm, dir, info, &r, &d));
    CHECK(!r || tr_reader_mode_ok(r));
    MPI_Info_free(&info);
    for (size_t i = 0; i < c->nreq; i++) {
        uint64_t bytes = tr_box_bytes(&c->t, c->shape[i]);
        buf[i] = calloc(1, bytes ? bytes : 1);
        q[i] = (sts_read_req){c->t.name, c->t.dtype, c->t.ndim, c->off[i], c->shape[i], buf[i]};
    }
    if (r) {
        CHECK_OK(sts_reader_read(r, q, c->nreq));
        sts_reader_stats(r, st);
    }
    for (size_t i = 0; i < c->nreq; i++) {
        uint64_t bytes = tr_box_bytes(&c->t, c->shape[i]);
        unsigned char *want = malloc(bytes ? bytes : 1);
        tr_fill(&c->t, c->off[i], c->shape[i], want);
        if (memcmp(want, buf[i], bytes) != 0) {
            fprintf(stderr, "%s, exchange %s: request %zu has wrong bytes\n", dir, x, i);
            test_failures++;
        }
        free(want);
        free(buf[i]);
    }
    sts_reader_free(r);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, cases;
    uint64_t first;
    long exchanged_cases = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    cases = argc > 1 ? atoi(argv[1]) : 60;
    first = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    for (int k = 0; k < cases; k++) {
        rcase c;
        char dir[96];
        int wrc = 0;
        uint64_t seed = first + (uint64_t)k, mine[3], sum[3], on_read = 0;
        sts_read_stats on, off;
        memset(&c, 0, sizeof c);
        snprintf(c.name, sizeof c.name, "t%d", k);
        snprintf(dir, sizeof dir, "par_read_xchg_random_np%d%s/case%llu", np, tr_dir_suffix(),
                 (unsigned long long)seed);
        draw_storage(&c, &seed);
        draw_requests(&c, &seed, me, np);
        if (me == 0) {
            char top[64];
            snprintf(top, sizeof top, "par_read_xchg_random_np%d%s", np, tr_dir_suffix());
            mkdir(top, 0777);
            wrc = write_case(&c, dir);
        }
        MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
        CHECK(wrc == 0);
        if (wrc != 0)
            break;
        read_case(comm, &c, dir, "auto", &on);
        read_case(comm, &c, dir, "off", &off);
        mine[0] = on.bytes_read, mine[1] = off.bytes_read, mine[2] = on.bytes_received;
        MPI_Allreduce(mine, sum, 3, MPI_UINT64_T, MPI_SUM, comm);
        on_read = sum[0];
        CHECK(on_read <= sum[1]);
        CHECK(off.bytes_received == 0);
        CHECK(on.bytes_needed == off.bytes_needed);
        exchanged_cases += sum[2] > 0 || on_read < sum[1];
        /* Every rank stops at the same case: one rank leaving alone would hang the rest. */
        TEST_AGREE(comm);
        if (test_failures) {
            fprintf(stderr, "rank %d: case seed %llu failed\n", me,
                    (unsigned long long)(first + (uint64_t)k));
            break;
        }
    }
    TEST_AGREE(comm);
    /* The draw must reach the two-phase path, or this test proves nothing about it. */
    if (np > 1)
        CHECK(exchanged_cases > 0);
    if (me == 0)
        printf("par_read_xchg_random: %s (%d ranks, %d cases, %ld with reads exchanged)\n",
               test_failures ? "FAILED" : "ok", np, cases, exchanged_cases);
    MPI_Finalize();
    return TEST_EXIT();
}
