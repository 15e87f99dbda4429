/*
 * par_mpiio.c - the MPI-IO layer: error agreement when one rank fails,
 * collective writes of uneven sizes (ranks with nothing still join), fresh
 * creation of files, temporary names.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiio.h"
#include "test_util.h"

static void test_agree(MPI_Comm comm, int me, int np)
{
    sts_diag d;
    int rc;
    sts__diag_clear(&d);
    CHECK_OK(sts__mpiio_agree(comm, STS_OK, &d));
    /* The last rank fails alone: every rank must get its code and its message. */
    rc = (me == np - 1) ? sts__fail(&d, STS_E_NOSPACE, "disk full on purpose") : STS_OK;
    rc = sts__mpiio_agree(comm, rc, &d);
    CHECK_RC(rc, STS_E_NOSPACE);
    CHECK(strstr(d.message, "disk full on purpose") != NULL);
    CHECK(d.code == STS_E_NOSPACE);
    /* Two different errors: the most severe (lowest) code wins everywhere. */
    rc = (me == 0) ? sts__fail(&d, STS_E_IO, "io") : sts__fail(&d, STS_E_INVALID_OFFSET, "off");
    rc = sts__mpiio_agree(comm, rc, &d);
    CHECK_RC(rc, np > 1 ? STS_E_INVALID_OFFSET : STS_E_IO);
}

static void test_write_all(MPI_Comm comm, int me, int np, const char *dir)
{
    sts_diag d;
    MPI_File fh;
    char *path = sts__path_join(dir, "par_mpiio.bin");
    /* Rank r writes r*1000 bytes of value r at the prefix sum of the sizes: rank 0 has nothing. */
    uint64_t len = (uint64_t)me * 1000, off = 0, total = 0, size = 0;
    char *buf = malloc(len ? len : 1);
    memset(buf, 'a' + me, len);
    for (int r = 0; r < np; r++) {
        if (r < me)
            off += (uint64_t)r * 1000;
        total += (uint64_t)r * 1000;
    }
    CHECK_OK(sts__mpiio_open_all(comm, path, 1, MPI_INFO_NULL, &fh, &d));
    CHECK_OK(sts__mpiio_write_at_all(fh, comm, off, buf, len, &d));
    CHECK_OK(sts__mpiio_close(&fh, &d));
    MPI_Barrier(comm);
    CHECK_OK(sts__mpiio_open_self(path, 0, MPI_INFO_NULL, &fh, &d));
    CHECK_OK(sts__mpiio_size(fh, &size, &d));
    CHECK(size == total);
    if (len) {
        char *back = malloc(len);
        CHECK_OK(sts__mpiio_read_at(fh, off, back, len, &d));
        CHECK(memcmp(back, buf, len) == 0);
        /* Reading past the end is a short read, reported as an I/O error. */
        CHECK_RC(sts__mpiio_read_at(fh, total - 10, back, 20, &d), STS_E_IO);
        free(back);
    }
    CHECK_OK(sts__mpiio_close(&fh, &d));
    MPI_Barrier(comm);
    /* Opening for writing again creates the file fresh (the old one is removed first). */
    CHECK_OK(sts__mpiio_open_all(comm, path, 1, MPI_INFO_NULL, &fh, &d));
    CHECK_OK(sts__mpiio_size(fh, &size, &d));
    CHECK(size == 0);
    CHECK_OK(sts__mpiio_close(&fh, &d));
    MPI_Barrier(comm);
    if (me == 0)
        unlink(path);
    free(buf);
    free(path);
}

/* Hints from STSHARD_MPI_HINTS apply to every open; a malformed list is refused. */
static void test_env_hints(MPI_Comm comm, const char *dir)
{
    sts_diag d;
    MPI_File fh;
    char *path = sts__path_join(dir, "hints.bin");
    setenv("STSHARD_MPI_HINTS", "romio_cb_write=enable,cb_buffer_size=1048576", 1);
    CHECK_OK(sts__mpiio_open_all(comm, path, 1, MPI_INFO_NULL, &fh, &d));
    CHECK_OK(sts__mpiio_close(&fh, &d));
    setenv("STSHARD_MPI_HINTS", "romio_cb_write", 1);
    CHECK_RC(sts__mpiio_open_all(comm, path, 1, MPI_INFO_NULL, &fh, &d), STS_E_ARG);
    CHECK(strstr(d.message, "STSHARD_MPI_HINTS") != NULL);
    CHECK(fh == MPI_FILE_NULL);
    unsetenv("STSHARD_MPI_HINTS");
    free(path);
}

int main(int argc, char **argv)
{
    MPI_Comm comm;
    int me, np;
    sts_diag d;
    char dir[64], *tmp;
    MPI_Init(&argc, &argv);
    CHECK_OK(sts__mpiio_comm_dup(MPI_COMM_WORLD, &comm, &d));
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    snprintf(dir, sizeof dir, "par_mpiio_np%d", np);
    if (me == 0)
        CHECK_OK(sts__path_mkdir_p(dir, &d));
    MPI_Barrier(comm);
    test_agree(comm, me, np);
    test_write_all(comm, me, np, dir);
    test_env_hints(comm, dir);
    tmp = sts__path_tmp("a/b/model.safetensors");
    CHECK(tmp && strcmp(tmp, "a/b/.model.safetensors.stshard-partial") == 0);
    free(tmp);
    tmp = sts__path_tmp("x");
    CHECK(tmp && strcmp(tmp, ".x.stshard-partial") == 0);
    free(tmp);
    /* A path through an existing file cannot become a directory. */
    CHECK_RC(sts__path_mkdir_p("/proc/self/status/x", &d), STS_E_NOENT);
    TEST_AGREE(comm);
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return TEST_EXIT();
}
