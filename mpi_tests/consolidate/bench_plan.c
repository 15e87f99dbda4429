/*
 * bench_plan.c - planner scaling without MPI: F simulated rank files x T
 * tensors (default 4096 x 2000, one block of every tensor in every file, as
 * FSDP writes them), planned with sts__plan_build, then one rank's data walk
 * (chunks and pieces of rank 0 of F) for the same plan.  Prints the times
 * and the peak RSS; the blocks themselves (the metadata) are reported
 * separately so the planner's own memory can be read off.
 *
 * Mix: 50% row-sharded [F*2, 1024] F32, 25% column-sharded [512, F*2] BF16,
 * 25% on a 64 x (F/64) grid [2048, 2048] BF16 (one block per file).
 *
 * Usage: bench_plan [FILES [TENSORS]]   (checks the plan; no time limits)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "meta.h"
#include "plan.h"
#include "test_util.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/*
 * The metadata one rank of P holds in a distributed consolidation (meta.c),
 * modelled from this plan: the records it owns as a checker, every tensor's
 * summary and plan entry, and the blocks of the tensors its share touches
 * (reply record, block struct, order entry).  Returns the largest rank's
 * bytes; *replicated gets what every rank would hold if all records were
 * gathered to all (records plus block structs), as before meta.c.
 */
static double model_rank_mib(const sts_plan *p, const sts_plan_block *b, size_t n, int P,
                             double *replicated, double *owned_max)
{
    double *own = calloc((size_t)P, sizeof *own), best = 0, shared = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
        double r = (double)sts__meta_record_bytes(b[i].ndim, b[i].name_len);
        own[sts__meta_owner(b[i].name, b[i].name_len, P)] += r + sizeof(sts_plan_block) + 8;
        all += r + sizeof(sts_plan_block);
    }
    for (size_t t = 0; t < p->ntensors; t++)
        shared += (double)sts__meta_summary_bytes(p->tensors[t].ndim, p->tensors[t].name_len) +
                  sizeof(sts_plan_summary) + sizeof(sts_plan_tensor);
    *owned_max = 0;
    for (int r = 0; r < P; r++) {
        uint64_t lo, hi;
        double fetched = 0;
        sts__plan_chunk_rank_range(p, r, P, &lo, &hi);
        for (size_t t = 0; t < p->ntensors; t++) {
            const sts_plan_tensor *T = &p->tensors[t];
            if (T->stream_off < hi && T->stream_off + T->nbytes > lo)
                fetched +=
                    (double)T->nblocks * (16.0 + 16.0 * T->ndim + sizeof(sts_plan_block) + 8);
        }
        if (own[r] > *owned_max)
            *owned_max = own[r];
        if (own[r] + shared + fetched > best)
            best = own[r] + shared + fetched;
    }
    free(own);
    *replicated = all / 1048576.0;
    *owned_max /= 1048576.0;
    return best / 1048576.0;
}

int main(int argc, char **argv)
{
    uint32_t F = argc > 1 ? (uint32_t)atoi(argv[1]) : 4096;
    uint32_t T = argc > 2 ? (uint32_t)atoi(argv[2]) : 2000;
    uint32_t gr = F >= 64 ? 64 : 1, gc = F / gr; /* the grid of files */
    size_t n = (size_t)F * T;
    sts_plan_block *b = calloc(n, sizeof *b);
    uint64_t *dims = calloc(n * 4, sizeof *dims);
    char(*names)[48] = calloc(T, sizeof *names);
    sts_plan_opts o;
    sts_plan *p = NULL;
    sts_diag d;
    double t0, t1, t2, rss0;
    uint64_t chunks = 0, pieces = 0, bytes = 0;
    memset(&o, 0, sizeof o);
    if (!b || !dims || !names || F % gr) {
        fprintf(stderr, "bench_plan: bad arguments or out of memory\n");
        return 1;
    }
    for (uint32_t t = 0; t < T; t++)
        snprintf(names[t], sizeof names[t], "model.layers.%u.block.%u.weight", t / 8, t % 8);
    /* File-major, as the header phase delivers them. */
    for (uint32_t f = 0; f < F; f++) {
        for (uint32_t t = 0; t < T; t++) {
            size_t i = (size_t)f * T + t;
            uint64_t *off = dims + 4 * i, *sh = off + 2;
            b[i].name = names[t];
            b[i].name_len = (uint32_t)strlen(names[t]);
            b[i].file = f;
            b[i].ndim = 2;
            b[i].offsets = off;
            b[i].shape = sh;
            b[i].data_off = 4096 + (uint64_t)t * 1000;
            if (t % 4 < 2) { /* row */
                b[i].dtype = STS_F32;
                off[0] = (uint64_t)f * 2, sh[0] = 2, off[1] = 0, sh[1] = 1024;
            } else if (t % 4 == 2) { /* column */
                b[i].dtype = STS_BF16;
                off[0] = 0, sh[0] = 512, off[1] = (uint64_t)f * 2, sh[1] = 2;
            } else { /* 2-D grid */
                uint64_t rows = 2048 / gr, cols = 2048 / gc;
                b[i].dtype = STS_BF16;
                off[0] = (f / gc) * rows, sh[0] = rows, off[1] = (f % gc) * cols, sh[1] = cols;
            }
        }
    }
    rss0 = rss_mib();
    t0 = now();
    CHECK_OK(sts__plan_build(b, n, &o, &p, &d));
    t1 = now();
    if (p) {
        sts_plan_iter it;
        sts_plan_chunk c;
        sts_plan_pieces ps;
        memset(&ps, 0, sizeof ps);
        CHECK(p->ntensors == T && p->nfiles == 1);
        sts__plan_chunk_iter_init(&it, p, 0, (int)F, 2 << 20);
        while (sts__plan_chunk_iter_next(&it, &c)) {
            CHECK_OK(sts__plan_chunk_pieces(p, &c, &ps, &d));
            chunks++;
            pieces += ps.n;
            bytes += c.len;
        }
        sts__plan_chunk_pieces_free(&ps);
    }
    t2 = now();
    printf("bench_plan: %u files x %u tensors = %zu blocks: plan %.2f s, rank 0 of %u walk "
           "%.3f s (%llu chunks, %llu pieces, %llu bytes); peak RSS %.0f MiB (block records "
           "%.0f MiB of it)\n",
           F, T, n, t1 - t0, F, t2 - t1, (unsigned long long)chunks, (unsigned long long)pieces,
           (unsigned long long)bytes, rss_mib(), rss0);
    for (int k = 0; p && k < 2; k++) {
        int P = k == 0 ? 64 : 1024;
        double rep, own, mib = model_rank_mib(p, b, n, P, &rep, &own);
        printf("bench_plan: simulated P = %d: largest rank holds %.1f MiB of metadata "
               "(%.1f MiB owned records); gathering every record to every rank: %.1f MiB\n",
               P, mib, own, rep);
        CHECK(mib < rep);
    }
    sts__plan_free(p);
    free(b);
    free(dims);
    free(names);
    return TEST_EXIT();
}
