/*
 * bench_raw.c - the raw MPI-IO baselines of `stshard bench --baseline`:
 * file-per-process and shared-file writes and reads of the model's byte
 * count, the way IOR's MPIIO backend moves a block per rank (independent
 * transfers of --transfer-size bytes, contiguous per rank).  They open their
 * files with the same hints as the library, so a phase divided by its
 * baseline isolates what stshard adds on top of the machine.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "share.h"

/* Rank me's contiguous part of n bytes over np ranks (the first n % np get one more). */
static void split(uint64_t n, int np, int me, uint64_t *off, uint64_t *len)
{
    uint64_t base = n / (uint64_t)np, rem = n % (uint64_t)np, u = (uint64_t)me;
    *len = base + (u < rem);
    *off = u * base + (u < rem ? u : rem);
}

static int is_shared(bench_op op)
{
    return op == BENCH_SHARED_WRITE || op == BENCH_SHARED_READ;
}

static int is_write(bench_op op)
{
    return op == BENCH_FPP_WRITE || op == BENCH_SHARED_WRITE;
}

/* raw-shared, or raw-fpp.RRRRR (one per rank, like IOR's testFile.00000001). */
static char *raw_path(const bench_run *r, int shared, int rank)
{
    char *p = malloc(strlen(r->work) + 32);
    if (!p)
        return NULL;
    if (shared)
        sprintf(p, "%s/raw-shared", r->work);
    else
        sprintf(p, "%s/raw-fpp.%05d", r->work, rank);
    return p;
}

/* The transfers of one rank, between open and close; 0 or an STS_E_* code. */
static int transfer(MPI_File fh, int write, uint64_t off, uint64_t len, unsigned char *buf,
                    uint64_t xfer, int fsync, char *err, size_t errlen)
{
    for (uint64_t done = 0; done < len;) {
        int n = (int)(len - done < xfer ? len - done : xfer), got = 0, mrc;
        MPI_Status st;
        if (write)
            mrc = MPI_File_write_at(fh, (MPI_Offset)(off + done), buf, n, MPI_BYTE, &st);
        else
            mrc = MPI_File_read_at(fh, (MPI_Offset)(off + done), buf, n, MPI_BYTE, &st);
        if (mrc == MPI_SUCCESS)
            MPI_Get_count(&st, MPI_BYTE, &got);
        if (mrc != MPI_SUCCESS || got != n) {
            snprintf(err, errlen, "%s of %d bytes at offset %llu %s", write ? "write" : "read", n,
                     (unsigned long long)(off + done),
                     mrc != MPI_SUCCESS ? "failed" : "came back short");
            return STS_E_IO;
        }
        done += (uint64_t)n;
    }
    if (write && fsync && MPI_File_sync(fh) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_File_sync failed");
        return STS_E_IO;
    }
    return STS_OK;
}

/* Removes this rank's file (fpp) or, on rank 0, the shared file. */
static void remove_files(const bench_run *r, int shared)
{
    char *p;
    if (shared && r->me != 0)
        return;
    p = raw_path(r, shared, r->me);
    if (p)
        unlink(p);
    free(p);
}

/* Opens, transfers and closes; the timed body of a baseline.  This rank's code. */
static int raw_body(bench_run *r, bench_op op, const char *path, MPI_Info hints, unsigned char *buf,
                    uint64_t off, uint64_t len, char *err, size_t errlen)
{
    int write = is_write(op), shared = is_shared(op), rc;
    int amode = write ? MPI_MODE_CREATE | MPI_MODE_WRONLY : MPI_MODE_RDONLY;
    MPI_File fh = MPI_FILE_NULL;
    /* The shared file is opened collectively over all ranks, as IOR does; each
     * fpp file by its rank alone.  File handles default to MPI_ERRORS_RETURN. */
    if (MPI_File_open(shared ? r->comm : MPI_COMM_SELF, path, amode, hints, &fh) != MPI_SUCCESS) {
        snprintf(err, errlen, "%s: cannot open for %s", path, write ? "writing" : "reading");
        return STS_E_IO;
    }
    rc = transfer(fh, write, shared ? off : 0, len, buf, r->a.transfer, r->a.fsync, err, errlen);
    if (MPI_File_close(&fh) != MPI_SUCCESS && rc == STS_OK) {
        snprintf(err, errlen, "%s: close failed", path);
        rc = STS_E_IO;
    }
    if (rc != STS_OK && strncmp(err, path, strlen(path)) != 0) {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s: %s", path, err);
        snprintf(err, errlen, "%s", tmp);
    }
    return rc;
}

int bench_raw(bench_run *r, bench_op op, bench_sample *out, char *err, size_t errlen)
{
    uint64_t off, len, xfer = r->a.transfer;
    unsigned char *buf = malloc(xfer);
    char *path = raw_path(r, is_shared(op), r->me);
    MPI_Info hints = MPI_INFO_NULL;
    sts_diag d;
    int rc = STS_OK;
    double t0;

    memset(out, 0, sizeof *out);
    memset(&d, 0, sizeof d);
    split(r->m.total_bytes, r->np, r->me, &off, &len);
    if (!buf || !path) {
        snprintf(err, errlen, "out of memory for a %llu-byte transfer buffer",
                 (unsigned long long)xfer);
        rc = STS_E_NOMEM;
    } else if ((rc = sts_mpiio_env_hints(&hints, &d)) != STS_OK) {
        snprintf(err, errlen, "%s", d.message);
    } else {
        /* Touch every page and give writes a non-constant pattern, outside the clock. */
        for (uint64_t i = 0; i < xfer; i++)
            buf[i] = (unsigned char)(i * 131 + (uint64_t)r->me);
    }
    if (is_write(op))
        remove_files(r, is_shared(op));
    rc = share_agree(r->comm, rc, err, errlen);
    if (rc == STS_OK) {
        bench_settle(r);
        MPI_Barrier(r->comm);
        t0 = MPI_Wtime();
        rc = raw_body(r, op, path, hints, buf, off, len, err, errlen);
        out->seconds = MPI_Wtime() - t0;
        out->bytes = len;
        rc = share_agree(r->comm, rc, err, errlen);
    }
    if (hints != MPI_INFO_NULL)
        MPI_Info_free(&hints);
    free(path);
    free(buf);
    return rc;
}

void bench_raw_cleanup(bench_run *r)
{
    remove_files(r, 0);
    remove_files(r, 1);
    MPI_Barrier(r->comm);
}
