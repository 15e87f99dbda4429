/*
 * par_fault.c - the fault-injection switch itself (test builds only), on the
 * MPI-IO layer every collective module writes through:
 *  - a failure injected on one rank reaches every rank as the same code and
 *    the same message (the error agreement), naming the failing rank;
 *  - rank=, hit= and the point name select exactly the calls asked for;
 *  - pause / mark / wait hold a rank at a point until the test lets it go;
 *  - without STSHARD_FAULT nothing is injected.
 * Usage: par_fault WORKDIR (run with 2..4 ranks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpiio.h"
#include "test_util.h"

/* Opens DIR/name on every rank and has each rank write 100 bytes at rank * 100, twice. */
static int write_twice(MPI_Comm comm, const char *dir, const char *name, int me, sts_diag *d)
{
    int rc = STS_OK;
    char buf[100], *path = sts__path_join(dir, name);
    MPI_File fh = MPI_FILE_NULL;
    memset(buf, 'a' + me, sizeof buf);
    rc = sts__mpiio_open_all(comm, path, 1, MPI_INFO_NULL, &fh, d);
    if (rc != STS_OK)
        goto done;
    for (int round = 0; round < 2; round++) {
        rc = sts__mpiio_write_at_all(fh, comm, (uint64_t)me * 100, buf, sizeof buf, d);
        rc = sts__mpiio_agree(comm, rc, d);
        if (rc != STS_OK)
            break;
    }
done:
    sts__mpiio_close(&fh, NULL);
    free(path);
    return rc;
}

/* Every rank got the same code and the same text. */
static void check_same(MPI_Comm comm, int rc, const sts_diag *d, int np)
{
    int *codes = malloc(sizeof(int) * (size_t)np);
    char *msgs = malloc(sizeof d->message * (size_t)np);
    MPI_Allgather(&rc, 1, MPI_INT, codes, 1, MPI_INT, comm);
    MPI_Allgather(d->message, (int)sizeof d->message, MPI_CHAR, msgs, (int)sizeof d->message,
                  MPI_CHAR, comm);
    for (int r = 1; r < np; r++) {
        CHECK(codes[r] == codes[0]);
        CHECK(strcmp(msgs + r * sizeof d->message, msgs) == 0);
    }
    free(codes);
    free(msgs);
}

static void test_one_rank(MPI_Comm comm, const char *dir, int me, int np)
{
    sts_diag d;
    char want[64];
    int rc;
    setenv("STSHARD_FAULT", "point=write,rank=1,code=nospace", 1);
    rc = write_twice(comm, dir, "one_rank.bin", me, &d);
    CHECK_RC(rc, STS_E_NOSPACE);
    snprintf(want, sizeof want, "rank 1: injected fault at 'write' on rank 1");
    CHECK(strstr(d.message, want) != NULL);
    check_same(comm, rc, &d, np);
    /* Any symbolic name, and the open point. */
    setenv("STSHARD_FAULT", "point=open,rank=1,code=PermissionDenied", 1);
    rc = write_twice(comm, dir, "open.bin", me, &d);
    CHECK_RC(rc, STS_E_ACCESS);
    check_same(comm, rc, &d, np);
}

static void test_selection(MPI_Comm comm, const char *dir, int me, int np)
{
    sts_diag d;
    int rc;
    /* The second write of rank 0 only: the first round completes, the second fails. */
    setenv("STSHARD_FAULT", "point=wri*,rank=0,hit=2", 1);
    rc = write_twice(comm, dir, "hit.bin", me, &d);
    CHECK_RC(rc, STS_E_IO);
    CHECK(strstr(d.message, "rank 0: injected fault at 'write'") != NULL);
    check_same(comm, rc, &d, np);
    /* Every rank fails: the agreement names the lowest. */
    setenv("STSHARD_FAULT", "point=write,code=io", 1);
    rc = write_twice(comm, dir, "all.bin", me, &d);
    CHECK_RC(rc, STS_E_IO);
    CHECK(strncmp(d.message, "rank 0: ", 8) == 0);
    /* Points that are not reached, a rank that does not exist, and no switch at all. */
    setenv("STSHARD_FAULT", "point=rename,code=io;point=write,rank=99", 1);
    CHECK_OK(write_twice(comm, dir, "none.bin", me, &d));
    unsetenv("STSHARD_FAULT");
    CHECK_OK(write_twice(comm, dir, "unset.bin", me, &d));
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_pause(MPI_Comm comm, const char *dir, int me, int np)
{
    char spec[1200], mark[512], go[512], out[512];
    const struct timespec step = {0, 5 * 1000 * 1000};
    sts_diag d;
    snprintf(mark, sizeof mark, "%s/pause.reached", dir);
    snprintf(go, sizeof go, "%s/pause.go", dir);
    snprintf(out, sizeof out, "%s/paused.bin", dir);
    if (me == 0) {
        unlink(mark);
        unlink(go);
        unlink(out);
    }
    MPI_Barrier(comm);
    snprintf(spec, sizeof spec, "point=rename,rank=0,action=pause,mark=%s,wait=%s", mark, go);
    setenv("STSHARD_FAULT", spec, 1);
    if (me == 0) {
        FILE *f = fopen(out, "w");
        char *tmp = sts__path_tmp(out);
        CHECK(f && tmp);
        fclose(f);
        rename(out, tmp);
        /* Held at the rename until the last rank creates the go file. */
        CHECK_OK(sts__mpiio_rename(tmp, out, &d));
        CHECK(exists(go) && exists(out));
        free(tmp);
    } else if (me == np - 1) {
        while (!exists(mark))
            nanosleep(&step, NULL);
        /* Rank 0 is paused: the rename has not happened yet. */
        CHECK(!exists(out));
        fclose(fopen(go, "w"));
    }
    unsetenv("STSHARD_FAULT");
    MPI_Barrier(comm);
}

int main(int argc, char **argv)
{
    int me, np;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 2 || np < 2) {
        if (me == 0)
            fprintf(stderr, "usage: mpiexec -n 2+ par_fault WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    test_one_rank(MPI_COMM_WORLD, argv[1], me, np);
    test_selection(MPI_COMM_WORLD, argv[1], me, np);
    test_pause(MPI_COMM_WORLD, argv[1], me, np);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0)
        printf("par_fault: %s\n", test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
