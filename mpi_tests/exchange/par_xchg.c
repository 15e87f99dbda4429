/*
 * par_xchg.c - the record exchange (src/exchange.c) on real ranks.
 *
 *   par_xchg          random part sizes (empty parts included) through the
 *                     allgather, the gather to every root and the personalized
 *                     exchange, every byte checked; a rank failing before the
 *                     exchange (rc_in) makes every rank return its code.
 *   par_xchg fault    (test builds with fault injection) the receive buffer's
 *                     allocation fails on one rank (STSHARD_FAULT point
 *                     xchg.alloc): every rank returns STS_E_NOMEM from the
 *                     exchange itself, and from a real sts_reader_open.  With
 *                     distributed reader metadata the fault is moved through
 *                     every exchange of an open and of a two-phase read (the
 *                     N-th allocation of one rank): each open or read fails on
 *                     every rank with NoMemory or succeeds with the right bytes.
 *                     A rank left inside a collective would hang: the ctest
 *                     timeout is the watchdog.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mpi.h>

#include "exchange.h"
#include "par_read_util.h"
#include "test_util.h"

static uint64_t g_seed;

/* Deterministic draws, the same sequence on every rank. */
static uint64_t draw(void)
{
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return g_seed >> 33;
}

/* A size: empty a quarter of the time, mostly small, sometimes tens of KiB. */
static uint64_t draw_size(void)
{
    uint64_t k = draw() % 8;
    if (k < 2)
        return 0;
    if (k < 7)
        return draw() % 200;
    return draw() % 70000;
}

static unsigned char byte_of(int src, int dst, uint64_t i)
{
    return (unsigned char)(src * 131 + dst * 31 + (int)(i * 7 % 251) + (int)(i >> 8));
}

static int fill(sts_bytes *b, int src, int dst, uint64_t n)
{
    int rc = STS_OK;
    for (uint64_t i = 0; i < n && rc == STS_OK; i++) {
        unsigned char c = byte_of(src, dst, i);
        rc = sts__bytes_put(b, &c, 1);
    }
    return rc;
}

/* 1 when part (start, len) of all is src's bytes for dst, n long and 8-byte aligned. */
static int part_ok(const unsigned char *all, uint64_t start, uint64_t len, int src, int dst,
                   uint64_t n)
{
    if (len != n || start % 8 != 0 || ((uintptr_t)all % 8) != 0)
        return 0;
    for (uint64_t i = 0; i < n; i++) {
        if (all[start + i] != byte_of(src, dst, i))
            return 0;
    }
    return 1;
}

static void test_gathers(MPI_Comm comm, int me, int np, uint64_t *sz, uint64_t *start,
                         uint64_t *len)
{
    for (int root = -1; root < np; root++) {
        sts_bytes b = {NULL, 0, 0};
        unsigned char *all = NULL;
        sts_diag d;
        int rc;
        for (int r = 0; r < np; r++)
            sz[r] = draw_size();
        CHECK_OK(fill(&b, me, -1, sz[me]));
        rc = root < 0 ? sts__exchange_allgather(comm, STS_OK, &b, &all, start, len, &d)
                      : sts__exchange_gather(comm, root, STS_OK, &b, &all, start, len, &d);
        CHECK_OK(rc);
        CHECK(b.len >= sz[me]); /* padding only appends */
        if (root < 0 || me == root) {
            CHECK(all != NULL);
            for (int r = 0; all && r < np; r++)
                CHECK(part_ok(all, start[r], len[r], r, -1, sz[r]));
        } else {
            CHECK(all == NULL);
        }
        free(all);
        sts__bytes_free(&b);
    }
}

static void test_alltoall(MPI_Comm comm, int me, int np, uint64_t *sz, uint64_t *start,
                          uint64_t *len)
{
    sts_bytes b = {NULL, 0, 0};
    unsigned char *all = NULL;
    sts_diag d;
    /* sz[src * np + dst]: what src sends dst. */
    for (int k = 0; k < np * np; k++)
        sz[k] = draw_size();
    for (int dst = 0; dst < np; dst++)
        CHECK_OK(fill(&b, me, dst, sz[me * np + dst]));
    CHECK_OK(sts__exchange_alltoall(comm, STS_OK, &b, sz + me * np, &all, start, len, &d));
    CHECK(all != NULL);
    for (int src = 0; all && src < np; src++)
        CHECK(part_ok(all, start[src], len[src], src, me, sz[src * np + me]));
    free(all);
    sts__bytes_free(&b);
}

/* Rank `victim` fails before the exchange: every rank gets its code and message, no data. */
static void test_rc_in(MPI_Comm comm, int me, int np, uint64_t *sz, uint64_t *start, uint64_t *len)
{
    for (int victim = 0; victim < np; victim++) {
        for (int kind = 0; kind < 3; kind++) {
            sts_bytes b = {NULL, 0, 0};
            unsigned char *all = (unsigned char *)&b; /* must come back NULL */
            sts_diag d;
            int rc, in = STS_OK;
            memset(&d, 0, sizeof d);
            for (int k = 0; k < np; k++)
                sz[k] = 5;
            CHECK_OK(fill(&b, me, -1, 40));
            if (me == victim)
                in = sts__fail(&d, STS_E_IO, "packing failed on purpose");
            if (kind == 0)
                rc = sts__exchange_allgather(comm, in, &b, &all, start, len, &d);
            else if (kind == 1)
                rc = sts__exchange_gather(comm, np - 1, in, &b, &all, start, len, &d);
            else
                rc = sts__exchange_alltoall(comm, in, &b, sz, &all, start, len, &d);
            CHECK_RC(rc, STS_E_IO);
            CHECK(all == NULL);
            CHECK(strstr(d.message, "packing failed on purpose") != NULL);
            sts__bytes_free(&b);
        }
    }
}

/* The allocation of the receive buffer fails on `victim` only. */
static void test_alloc_fault(MPI_Comm comm, int me, int np, uint64_t *sz, uint64_t *start,
                             uint64_t *len)
{
    char spec[128];
    for (int victim = 0; victim < np; victim++) {
        for (int kind = 0; kind < 3; kind++) {
            sts_bytes b = {NULL, 0, 0};
            unsigned char *all = NULL;
            sts_diag d;
            int rc;
            for (int k = 0; k < np; k++)
                sz[k] = 16;
            CHECK_OK(fill(&b, me, -1, 16 * (uint64_t)np));
            snprintf(spec, sizeof spec, "point=xchg.alloc,rank=%d,code=nomem", victim);
            setenv("STSHARD_FAULT", spec, 1);
            if (kind == 0)
                rc = sts__exchange_allgather(comm, STS_OK, &b, &all, start, len, &d);
            else if (kind == 1) /* the root is the only rank that allocates */
                rc = sts__exchange_gather(comm, victim, STS_OK, &b, &all, start, len, &d);
            else
                rc = sts__exchange_alltoall(comm, STS_OK, &b, sz, &all, start, len, &d);
            unsetenv("STSHARD_FAULT");
            CHECK_RC(rc, STS_E_NOMEM);
            CHECK(all == NULL);
            CHECK(strstr(d.message, "injected fault") != NULL);
            free(all);
            sts__bytes_free(&b);
        }
    }
}

/* A real sts_reader_open whose header exchange cannot allocate on one rank. */
static void test_reader_fault(MPI_Comm comm, int me, int np)
{
    static const tr_tensor A = {"w", STS_F32, 2, {8, 4}};
    char dir[64], path[160], spec[128];
    int wrc = 0;
    snprintf(dir, sizeof dir, "par_xchg_np%d", np);
    if (me == 0) {
        mkdir(dir, 0777);
        for (int f = 0; f < 2 && wrc == 0; f++) {
            tr_block b = {&A, {(uint64_t)f * 4, 0}, {4, 4}};
            snprintf(path, sizeof path, "%s/shard-%05d-model-00001-of-00001.safetensors", dir,
                     f + 1);
            wrc = tr_write_file(path, &b, 1, 1);
        }
    }
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    for (int victim = 0; wrc == 0 && victim < np; victim++) {
        sts_reader *r = NULL;
        sts_diag d;
        int rc;
        snprintf(spec, sizeof spec, "point=xchg.alloc,rank=%d,code=nomem", victim);
        setenv("STSHARD_FAULT", spec, 1);
        rc = sts_reader_open(comm, dir, MPI_INFO_NULL, &r, &d);
        unsetenv("STSHARD_FAULT");
        CHECK_RC(rc, STS_E_NOMEM);
        CHECK(r == NULL);
        sts_reader_free(r);
    }
    /* And without the fault the same directory opens. */
    if (wrc == 0) {
        sts_reader *r = NULL;
        sts_diag d;
        CHECK_OK(sts_reader_open(comm, dir, MPI_INFO_NULL, &r, &d));
        sts_reader_free(r);
    }
}

/* Every rank's rc is the same: 1 on every rank, else 0. */
static int same_everywhere(MPI_Comm comm, int rc)
{
    int lo = 0, hi = 0;
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, comm);
    return lo == hi;
}

/*
 * One distributed open and one read of column 'me % 4' of W (short strided
 * runs: the two-phase path, so requests are gathered and the blocks of all of
 * them fetched).  Returns the stage that failed (0 none, 1 open, 2 read).
 */
static int dist_round(MPI_Comm comm, int me, const char *dir, const tr_tensor *W)
{
    MPI_Info info;
    sts_reader *r = NULL;
    sts_diag d;
    unsigned char got[16 * 4], want[16 * 4];
    uint64_t off[2] = {0, (uint64_t)(me % 4)}, shape[2] = {16, 1};
    sts_read_req q = {W->name, W->dtype, 2, off, shape, got};
    int rc, stage = 0;
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_metadata", "distributed");
    rc = sts_reader_open(comm, dir, info, &r, &d);
    MPI_Info_free(&info);
    CHECK(same_everywhere(comm, rc));
    if (rc != STS_OK) {
        CHECK_RC(rc, STS_E_NOMEM);
        CHECK(strstr(d.message, "injected fault") != NULL);
        CHECK(r == NULL);
        return 1;
    }
    rc = sts_reader_read(r, &q, 1);
    CHECK(same_everywhere(comm, rc));
    if (rc != STS_OK) {
        CHECK_RC(rc, STS_E_NOMEM);
        CHECK(strstr(sts_reader_errmsg(r), "injected fault") != NULL);
        stage = 2;
    } else {
        tr_fill(W, off, shape, want);
        CHECK(memcmp(got, want, tr_box_bytes(W, shape)) == 0);
    }
    sts_reader_free(r);
    return stage;
}

/* The fault at each exchange of a distributed open and read, on each rank in turn. */
static void test_reader_dist_fault(MPI_Comm comm, int me, int np)
{
    static const tr_tensor W = {"w", STS_F32, 2, {16, 4}};
    static const tr_tensor B = {"b", STS_F32, 1, {16}};
    char dir[64], path[160], spec[128];
    int wrc = 0, failed[3] = {0, 0, 0};
    snprintf(dir, sizeof dir, "par_xchg_dist_np%d", np);
    if (me == 0) {
        mkdir(dir, 0777);
        for (int f = 0; f < 4 && wrc == 0; f++) {
            tr_block b[2] = {{&W, {(uint64_t)f * 4, 0}, {4, 4}}, {&B, {(uint64_t)f * 4}, {4}}};
            snprintf(path, sizeof path, "%s/shard-%05d-model-00001-of-00001.safetensors", dir,
                     f + 1);
            wrc = tr_write_file(path, b, 2, 1);
        }
    }
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    for (int victim = 0; wrc == 0 && victim < np; victim++) {
        for (int hit = 1; hit <= 8; hit++) {
            snprintf(spec, sizeof spec, "point=xchg.alloc,rank=%d,hit=%d,code=nomem", victim, hit);
            setenv("STSHARD_FAULT", spec, 1);
            failed[dist_round(comm, me, dir, &W)]++;
            unsetenv("STSHARD_FAULT");
        }
    }
    /* The faults reached both the open's exchanges and the read's, and ran out. */
    CHECK(failed[1] > 0);
    CHECK(failed[2] > 0);
    CHECK(failed[0] > 0);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, fault;
    uint64_t *sz, *start, *len;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    fault = argc > 1 && strcmp(argv[1], "fault") == 0;
    sz = calloc((size_t)np * (size_t)np, sizeof *sz);
    start = calloc((size_t)np, sizeof *start);
    len = calloc((size_t)np, sizeof *len);
    if (!sz || !start || !len)
        MPI_Abort(comm, 2);
    g_seed = 12345;
    if (fault) {
        test_alloc_fault(comm, me, np, sz, start, len);
        test_reader_fault(comm, me, np);
        test_reader_dist_fault(comm, me, np);
    } else {
        for (int it = 0; it < 20; it++) {
            test_gathers(comm, me, np, sz, start, len);
            test_alltoall(comm, me, np, sz, start, len);
        }
        test_rc_in(comm, me, np, sz, start, len);
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_xchg%s: %s (%d ranks)\n", fault ? " fault" : "",
               test_failures ? "FAILED" : "ok", np);
    free(sz);
    free(start);
    free(len);
    MPI_Finalize();
    return TEST_EXIT();
}
