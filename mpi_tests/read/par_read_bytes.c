/*
 * par_read_bytes.c - a block read costs its own bytes, measured by the
 * kernel: /proc/self/io "rchar" counts every byte this process obtained from
 * read-type system calls, page cache or not.  Each rank reads column blocks
 * (strided: 2 KiB and 256-byte runs), a row block and a 2-D block of an
 * 8 MiB F32 tensor, from a single file and from four row-sharded rank files,
 * and must read at most the block's bytes plus 5%; the reader's own counters
 * must say exactly the block's bytes.  The bytes must also be right.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_read_util.h"
#include "test_util.h"

#define ROWS 1024
#define COLS 2048

static const tr_tensor BIG = {"big", STS_F32, 2, {ROWS, COLS}};
/* Quarter-width column blocks of this one have 1 KiB runs and 3 KiB gaps, which Open MPI's
 * OMPIO reads whole through a file view (measured: 4x the bytes). */
static const tr_tensor MID = {"mid", STS_F32, 2, {ROWS, 1024}};
/* Stored as two column halves of 6 MiB: whole or row reads gather 2 KiB runs from contiguous
 * file ranges larger than the reader's 4 MiB bounce buffer. */
static const tr_tensor TALL = {"tall", STS_F32, 2, {3000, 1024}};

static long long rchar(void)
{
    char line[128];
    long long v = -1;
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "rchar:", 6) == 0)
            v = atoll(line + 6);
    fclose(f);
    return v;
}

static int write_inputs(const char *dir)
{
    char p[320];
    tr_block b[2];
    memset(b, 0, sizeof b);
    b[0].t = &BIG;
    b[1].t = &MID;
    memcpy(b[0].shape, BIG.shape, sizeof b[0].shape);
    memcpy(b[1].shape, MID.shape, sizeof b[1].shape);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (tr_write_file(p, b, 2, 0) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/sharded", dir);
    mkdir(p, 0777);
    for (int r = 0; r < 4; r++) {
        for (int k = 0; k < 2; k++) {
            b[k].off[0] = (uint64_t)r * (ROWS / 4);
            b[k].shape[0] = ROWS / 4;
        }
        snprintf(p, sizeof p, "%s/sharded/shard-%05d-model-00001-of-00001.safetensors", dir, r + 1);
        if (tr_write_file(p, b, 2, 1) != 0)
            return -1;
    }
    snprintf(p, sizeof p, "%s/colsharded", dir);
    mkdir(p, 0777);
    for (int r = 0; r < 2; r++) {
        memset(b, 0, sizeof b);
        b[0].t = &BIG;
        b[1].t = &TALL;
        b[0].shape[0] = ROWS;
        b[1].shape[0] = 3000;
        b[0].off[1] = (uint64_t)r * COLS / 2;
        b[0].shape[1] = COLS / 2;
        b[1].off[1] = (uint64_t)r * 512;
        b[1].shape[1] = 512;
        snprintf(p, sizeof p, "%s/colsharded/shard-%05d-model-00001-of-00001.safetensors", dir,
                 r + 1);
        if (tr_write_file(p, b, 2, 1) != 0)
            return -1;
    }
    return 0;
}

/* Reads one block and checks bytes, the reader's counters and the kernel's. */
static void measured_read(sts_reader *r, const tr_tensor *t, const char *what, uint64_t r0,
                          uint64_t nr, uint64_t c0, uint64_t nc)
{
    uint64_t off[2] = {r0, c0}, shape[2] = {nr, nc}, bytes = nr * nc * 4;
    unsigned char *buf = malloc(bytes), *want = malloc(bytes);
    sts_read_req q = {t->name, STS_F32, 2, off, shape, buf};
    sts_read_stats s0, s1;
    long long k0, k1;
    sts_reader_stats(r, &s0);
    k0 = rchar();
    CHECK_OK(sts_reader_read_local(r, &q, 1));
    k1 = rchar();
    sts_reader_stats(r, &s1);
    tr_fill(t, off, shape, want);
    CHECK(memcmp(buf, want, bytes) == 0);
    CHECK(s1.bytes_needed - s0.bytes_needed == bytes);
    CHECK(s1.bytes_read - s0.bytes_read == bytes);
    CHECK(k0 >= 0 && k1 >= k0);
    if ((double)(k1 - k0) > 1.05 * (double)bytes) {
        fprintf(stderr, "%s: read %lld bytes for a %llu-byte block\n", what, k1 - k0,
                (unsigned long long)bytes);
        test_failures++;
    }
    /* The kernel saw at least the block: nothing came from elsewhere. */
    CHECK((uint64_t)(k1 - k0) >= bytes);
    free(buf);
    free(want);
}

/* Row and whole reads over column-split blocks: contiguous file ranges, strided in memory. */
static void test_gather(MPI_Comm comm, int me, const char *path)
{
    sts_reader *r = NULL;
    sts_diag d;
    uint64_t q = (uint64_t)(me % 4);
    CHECK_OK(sts_reader_open(comm, path, MPI_INFO_NULL, &r, &d));
    if (r) {
        measured_read(r, &TALL, "tall whole", 0, 3000, 0, 1024);
        measured_read(r, &TALL, "tall rows", 100 + q * 50, 2500, 0, 1024);
        measured_read(r, &TALL, "tall rows, columns across both blocks", 7, 2990, 300, 500);
        measured_read(r, &BIG, "big rows", q * 256, 256, 0, COLS);
    }
    sts_reader_free(r);
    TEST_AGREE(comm);
}

static void test_path(MPI_Comm comm, int me, const char *path)
{
    sts_reader *r = NULL;
    sts_diag d;
    uint64_t q = (uint64_t)(me % 4);
    CHECK_OK(sts_reader_open(comm, path, MPI_INFO_NULL, &r, &d));
    if (r) {
        measured_read(r, &BIG, "column block 512", 0, ROWS, q * 512, 512);
        measured_read(r, &BIG, "column block 64", 0, ROWS, q * 64 + 7, 64);
        measured_read(r, &BIG, "column 3/4", 0, ROWS, (q % 2) * 512, 1536);
        measured_read(r, &MID, "column quarter", 0, ROWS, q * 256, 256);
        measured_read(r, &BIG, "row block", q * 256, 256, 0, COLS);
        measured_read(r, &BIG, "2-D block", 100 + q * 200, 300, 1000 - q * 100, 700);
    }
    sts_reader_free(r);
    TEST_AGREE(comm);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me, np, wrc = 0;
    char dir[64], p[128];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    snprintf(dir, sizeof dir, "par_read_bytes_np%d", np);
    if (me == 0)
        wrc = write_inputs(dir);
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    if (wrc == 0) {
        test_path(comm, me, dir);
        snprintf(p, sizeof p, "%s/sharded", dir);
        test_path(comm, me, p);
        snprintf(p, sizeof p, "%s/colsharded", dir);
        test_gather(comm, me, p);
    }
    TEST_AGREE(comm);
    if (me == 0)
        printf("par_read_bytes: %s (%d ranks)\n", test_failures ? "FAILED" : "ok", np);
    MPI_Finalize();
    return TEST_EXIT();
}
