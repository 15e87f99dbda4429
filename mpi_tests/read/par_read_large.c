/*
 * par_read_large.c - reads past the int limits of Open MPI 4.1's MPI-IO: a
 * U8 tensor [2, 2^30 + 8] (2 GiB + 16 bytes) in one file is read whole (one
 * contiguous run of more than INT_MAX bytes), as a column block whose two
 * runs are 2^30 bytes each, and as a block crossing the 2 GiB file offset,
 * in both strided-read modes.  Bytes are checked around every 1 GiB boundary
 * and at a stride, and the reader's byte counters must be exact.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "par_read_util.h"
#include "test_util.h"

#define COLS (((uint64_t)1 << 30) + 8)

static const tr_tensor HUGE = {"huge", STS_U8, 2, {2, COLS}};

/* 1 when byte (r, c) of the block got (at off in HUGE, row length n1) is wrong. */
static int wrong(const unsigned char *got, const uint64_t *off, uint64_t n1, uint64_t r, uint64_t c)
{
    return got[r * n1 + c] != tr_byte(tr_key(HUGE.name), (off[0] + r) * COLS + off[1] + c);
}

/*
 * Checks got (block off/shape of HUGE) at the ends of each row, at the 1 GiB
 * boundaries and at every 4093rd byte.  It visits only those bytes: a loop
 * over all 2^31 of them cost most of the test's time.
 */
static void check_sampled(const unsigned char *got, const uint64_t *off, const uint64_t *shape)
{
    uint64_t n1 = shape[1], n = shape[0] * n1, bad = 0, gib = (uint64_t)1 << 30;
    for (uint64_t r = 0; r < shape[0]; r++) {
        for (uint64_t k = 0; k < 8 && k < n1; k++)
            bad += wrong(got, off, n1, r, k) + wrong(got, off, n1, r, n1 - 1 - k);
        for (uint64_t m = 0; m < n1; m += gib)
            for (uint64_t k = 0; k < 4 && m + k < n1; k++)
                bad += wrong(got, off, n1, r, m + k);
    }
    for (uint64_t i = 0; i < n; i += 4093)
        bad += wrong(got, off, n1, i / n1, i % n1);
    if (bad)
        fprintf(stderr, "block [%llu+%llu, %llu+%llu]: %llu sampled bytes differ\n",
                (unsigned long long)off[0], (unsigned long long)shape[0],
                (unsigned long long)off[1], (unsigned long long)shape[1], (unsigned long long)bad);
    CHECK(bad == 0);
}

/* The file: header by the codec, then the data section (global byte p = tr_byte(key, p)). */
static int write_huge(const char *path)
{
    sts_tensor_desc desc = {HUGE.name, HUGE.dtype, 2, HUGE.shape};
    uint64_t begin, end, key = tr_key(HUGE.name), chunk = (uint64_t)64 << 20;
    void *hdr = NULL;
    size_t hlen = 0;
    unsigned char *buf = malloc(chunk);
    FILE *f = NULL;
    int rc = -1;
    if (!buf || sts_header_encode(&desc, 1, NULL, 0, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, &begin,
                                  &end, NULL) != STS_OK)
        goto done;
    f = fopen(path, "wb");
    if (!f || fwrite(hdr, 1, hlen, f) != hlen)
        goto done;
    for (uint64_t p = 0; p < end; p += chunk) {
        uint64_t n = end - p < chunk ? end - p : chunk;
        for (uint64_t i = 0; i < n; i++)
            buf[i] = tr_byte(key, p + i);
        if (fwrite(buf, 1, n, f) != n)
            goto done;
    }
    rc = 0;
done:
    if (f && fclose(f) != 0)
        rc = -1;
    sts_free(hdr);
    free(buf);
    return rc;
}

static void read_block(sts_reader *r, uint64_t r0, uint64_t nr, uint64_t c0, uint64_t nc)
{
    uint64_t off[2] = {r0, c0}, shape[2] = {nr, nc}, bytes = nr * nc;
    unsigned char *buf = malloc(bytes);
    sts_read_req q = {"huge", STS_U8, 2, off, shape, buf};
    sts_read_stats s0, s1;
    CHECK(buf != NULL);
    if (!buf)
        return;
    sts_reader_stats(r, &s0);
    CHECK_OK(sts_reader_read(r, &q, 1));
    sts_reader_stats(r, &s1);
    CHECK(s1.bytes_read - s0.bytes_read == bytes);
    check_sampled(buf, off, shape);
    free(buf);
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    const char *path = "par_read_large.safetensors";
    int me, wrc = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    if (me == 0)
        wrc = write_huge(path);
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    CHECK(wrc == 0);
    for (int view = 0; wrc == 0 && view < 2; view++) {
        sts_reader *r = NULL;
        sts_diag d;
        MPI_Info info;
        MPI_Info_create(&info);
        MPI_Info_set(info, "stshard_strided_reads", view ? "view" : "runs");
        CHECK_OK(sts_reader_open(comm, path, info, &r, &d));
        if (r) {
            if (view == 0)
                read_block(r, 0, 2, 0, COLS);                /* 2 GiB + 16 bytes, one run */
            read_block(r, 0, 2, 5, (uint64_t)1 << 30);       /* two 1 GiB runs */
            read_block(r, 1, 1, COLS - 100, 100);            /* past the 2 GiB file offset */
            read_block(r, 0, 2, ((uint64_t)1 << 30) - 3, 9); /* tiny runs across 1 GiB */
        }
        sts_reader_free(r);
        MPI_Info_free(&info);
    }
    TEST_AGREE(comm);
    if (me == 0)
        unlink(path);
    if (me == 0)
        printf("par_read_large: %s\n", test_failures ? "FAILED" : "ok");
    MPI_Finalize();
    return TEST_EXIT();
}
