/*
 * par_read_xchg.c - two-phase reads (src/reader_xchg.c) against the direct path.
 *
 * Four rank files hold row-split tensors.  Every rank asks for a column
 * block of most of them, so together the ranks need whole rows of the stored
 * blocks while each rank's own block is strided in the files: the case the
 * exchange is for.  Also: a 3-D BF16 tensor split along its last dimension,
 * a U8 tensor with uneven splits, column halves requested by several ranks
 * at once (identical boxes), a row range that cuts through stored blocks,
 * one rank alone reading a column block (no tiling: direct reads), and a
 * column-stored tensor read by rows (contiguous in the file: direct).
 *
 * For each way of reading (exchange with the default buffer, with a buffer
 * smaller than one row so that every unit is a single row and there are
 * many rounds, and exchange off) every byte is compared with the generator,
 * and the counters must say: with the exchange, all ranks together read
 * each requested byte exactly once, and other ranks' reads reached this one
 * (P > 1); without it, each rank read exactly its own bytes.  With the
 * argument "fault" (run under STSHARD_FAULT=point=xchg.read,rank=1,hit=1)
 * the first read must fail with the same code and message on every rank,
 * without hanging, and the next read must work.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_read_util.h"
#include "test_util.h"

enum { TA, TB, TC, TD, TE, TF, TG, NT };
static const tr_tensor T[NT] = {
    {"a.f32", STS_F32, 2, {1000, 768}},     {"b.bf16.3d", STS_BF16, 3, {64, 48, 40}},
    {"c.u8", STS_U8, 2, {333, 500}},        {"d.halves", STS_F32, 2, {512, 256}},
    {"e.rows", STS_F32, 2, {600, 512}},     {"f.alone", STS_F32, 2, {400, 1024}},
    {"g.colstored", STS_F32, 2, {300, 64}},
};

/* Rank file r's block of tensor i: 1 and the block, or 0 when it holds none. */
static int stored_block(int r, int i, tr_block *b)
{
    const tr_tensor *t = &T[i];
    uint64_t rows = t->shape[0];
    memset(b, 0, sizeof *b);
    b->t = t;
    memcpy(b->shape, t->shape, sizeof b->shape);
    switch (i) {
    case TC:
    case TE: { /* two row blocks, in files 0 and 1 */
        uint64_t split = i == TC ? 200 : 300;
        if (r > 1)
            return 0;
        b->off[0] = r == 0 ? 0 : split;
        b->shape[0] = r == 0 ? split : rows - split;
        return 1;
    }
    case TG: /* column halves in files 0 and 1 */
        if (r > 1)
            return 0;
        b->off[1] = (uint64_t)r * 32;
        b->shape[1] = 32;
        return 1;
    default: /* a quarter of the rows each */
        b->off[0] = (uint64_t)r * rows / 4;
        b->shape[0] = (uint64_t)(r + 1) * rows / 4 - b->off[0];
        return 1;
    }
}

static int write_inputs(const char *dir)
{
    char p[320];
    tr_block b[NT];
    mkdir(dir, 0777);
    for (int r = 0; r < 4; r++) {
        size_t n = 0;
        for (int i = 0; i < NT; i++)
            n += (size_t)stored_block(r, i, &b[n]);
        snprintf(p, sizeof p, "%s/shard-%05d-model-00001-of-00001.safetensors", dir, r + 1);
        if (tr_write_file(p, b, n, 1) != 0)
            return -1;
    }
    return 0;
}

/* The k-th of P parts of [0, n). */
static void part(uint64_t n, int k, int P, uint64_t *lo, uint64_t *len)
{
    *lo = n * (uint64_t)k / (uint64_t)P;
    *len = n * (uint64_t)(k + 1) / (uint64_t)P - *lo;
}

typedef struct reqset {
    sts_read_req q[NT];
    uint64_t off[NT][TR_MAX_DIMS], shape[NT][TR_MAX_DIMS];
    unsigned char *buf[NT];
    size_t n;
    uint64_t needed;
} reqset;

static void add_req(reqset *s, int i)
{
    const tr_tensor *t = &T[i];
    size_t k = s->n++;
    uint64_t bytes = tr_box_bytes(t, s->shape[i]);
    s->buf[k] = malloc(bytes ? bytes : 1);
    s->q[k] = (sts_read_req){t->name, t->dtype, t->ndim, s->off[i], s->shape[i], s->buf[k]};
    s->needed += bytes;
}

/* This rank's requests (see the file comment). */
static void make_reqs(reqset *s, int me, int P)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < NT; i++)
        memcpy(s->shape[i], T[i].shape, sizeof s->shape[i]);
    part(768, me, P, &s->off[TA][1], &s->shape[TA][1]);
    part(40, me, P, &s->off[TB][2], &s->shape[TB][2]);
    part(500, me, P, &s->off[TC][1], &s->shape[TC][1]);
    s->off[TD][1] = (uint64_t)(me % 2) * 128;
    s->shape[TD][1] = 128;
    s->off[TE][0] = 100;
    s->shape[TE][0] = 300;
    part(512, me, P, &s->off[TE][1], &s->shape[TE][1]);
    s->shape[TF][1] = 256;
    part(300, me, P, &s->off[TG][0], &s->shape[TG][0]);
    for (int i = 0; i < NT; i++) {
        if (i != TF || me == 0)
            add_req(s, i);
    }
}

static void free_reqs(reqset *s)
{
    for (size_t k = 0; k < s->n; k++)
        free(s->buf[k]);
}

static int check_data(const reqset *s)
{
    int bad = 0;
    for (size_t k = 0; k < s->n; k++) {
        const tr_tensor *t = NULL;
        for (int i = 0; i < NT; i++)
            t = strcmp(T[i].name, s->q[k].name) == 0 ? &T[i] : t;
        uint64_t bytes = tr_box_bytes(t, s->q[k].shape);
        unsigned char *want = malloc(bytes ? bytes : 1);
        tr_fill(t, s->q[k].offsets, s->q[k].shape, want);
        if (memcmp(want, s->q[k].buf, bytes) != 0) {
            fprintf(stderr, "tensor %s: wrong bytes\n", t->name);
            bad = 1;
        }
        free(want);
    }
    return bad;
}

/* Bytes all ranks asked for, each byte counted once. */
static uint64_t distinct_bytes(int P)
{
    uint64_t d_cols = P == 1 ? 128 : 256;
    return 1000 * 768 * 4 + 64 * 48 * 40 * 2 + 333 * 500 + 512 * d_cols * 4 + 300 * 512 * 4 +
           400 * 256 * 4 + 300 * 64 * 4;
}

static sts_reader *open_with(MPI_Comm comm, const char *dir, const char *exchange,
                             const char *buffer)
{
    sts_reader *r = NULL;
    sts_diag d;
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_exchange", exchange);
    if (buffer)
        MPI_Info_set(info, "stshard_exchange_buffer", buffer);
    CHECK_OK(tr_reader_open(comm, dir, info, &r, &d));
    CHECK(!r || tr_reader_mode_ok(r));
    MPI_Info_free(&info);
    return r;
}

static void run_mode(MPI_Comm comm, const char *dir, const char *exchange, const char *buffer)
{
    int me, P;
    reqset s;
    sts_read_stats st;
    uint64_t mine[3], sum[3];
    sts_reader *r;
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &P);
    r = open_with(comm, dir, exchange, buffer);
    make_reqs(&s, me, P);
    if (r) {
        CHECK_OK(sts_reader_read(r, s.q, s.n));
        CHECK(check_data(&s) == 0);
        sts_reader_stats(r, &st);
        mine[0] = st.bytes_read, mine[1] = st.bytes_received, mine[2] = st.bytes_needed;
        MPI_Allreduce(mine, sum, 3, MPI_UINT64_T, MPI_SUM, comm);
        CHECK(st.bytes_needed == s.needed);
        if (strcmp(exchange, "off") == 0) {
            CHECK(st.bytes_read == s.needed);
            CHECK(st.bytes_received == 0);
        } else {
            /* Each requested byte read once, by some rank. */
            CHECK(sum[0] == distinct_bytes(P));
            CHECK(P == 1 || sum[1] > 0);
            /* About this rank's share: rounding to rows and D's halves aside. */
            CHECK((double)st.bytes_read <= 1.10 * (double)s.needed + 16384.0);
        }
        if (me == 0)
            printf("%s%s%s: read %llu of %llu needed (all ranks), %llu received\n", exchange,
                   buffer ? ", buffer " : "", buffer ? buffer : "", (unsigned long long)sum[0],
                   (unsigned long long)sum[2], (unsigned long long)sum[1]);
    }
    free_reqs(&s);
    sts_reader_free(r);
    TEST_AGREE(comm);
}

/* Under STSHARD_FAULT=point=xchg.read,rank=1,hit=1: one failed read, then a good one. */
static void run_fault(MPI_Comm comm, const char *dir)
{
    int me, P;
    reqset s;
    char msg[512] = "", first[512] = "";
    sts_reader *r;
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &P);
    r = open_with(comm, dir, "auto", NULL);
    make_reqs(&s, me, P);
    if (r) {
        CHECK_RC(sts_reader_read(r, s.q, s.n), STS_E_IO);
        snprintf(msg, sizeof msg, "%s", sts_reader_errmsg(r));
        memcpy(first, msg, sizeof first);
        MPI_Bcast(first, (int)sizeof first, MPI_CHAR, 0, comm);
        CHECK(strcmp(msg, first) == 0);
        CHECK(strstr(msg, "rank 1") != NULL);
        if (me == 0)
            printf("fault: %s\n", msg);
        CHECK_OK(sts_reader_read(r, s.q, s.n));
        CHECK(check_data(&s) == 0);
    }
    free_reqs(&s);
    sts_reader_free(r);
    TEST_AGREE(comm);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, wrc = 0;
    char dir[64];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    snprintf(dir, sizeof dir, "par_read_xchg_np%d%s%s", np, argc > 1 ? "_fault" : "",
             tr_dir_suffix());
    if (me == 0)
        wrc = write_inputs(dir);
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    if (wrc == 0 && argc > 1 && strcmp(argv[1], "fault") == 0) {
        run_fault(comm, dir);
    } else if (wrc == 0) {
        run_mode(comm, dir, "auto", NULL);
        run_mode(comm, dir, "auto", "1000");
        run_mode(comm, dir, "off", NULL);
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_read_xchg: %s (%d ranks)\n", test_failures ? "FAILED" : "ok", np);
    MPI_Finalize();
    return TEST_EXIT();
}
