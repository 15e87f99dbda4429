/*
 * bench_phase.c - the product's phases as `stshard bench` times them, each
 * through the library API exactly as an application would call it: a sharded
 * save of the model every rank holds in memory, a consolidation of the rank
 * files, and a load of every rank's share with offset reads.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "loadpass.h"
#include "share.h"

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void bench_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Collective.  Rank 0 removes the output of the previous iteration, outside
 * the clock; the directory lies inside the run's own mkdtemp directory, so
 * nothing but our files can be in it.
 */
static void clear_dir(const bench_run *r, const char *dir)
{
    if (r->me == 0)
        bench_rmtree(dir);
    MPI_Barrier(r->comm);
}

int bench_save(bench_run *r, bench_sample *out, char *err, size_t errlen)
{
    sts_save_opts o;
    sts_save_stats st;
    sts_writer *w = NULL;
    double t0;
    int rc;
    memset(out, 0, sizeof *out);
    memset(&st, 0, sizeof st);
    clear_dir(r, r->ranks_dir);
    bench_settle(r);
    sts_save_opts_init(&o);
    o.fsync = r->a.fsync;
    MPI_Barrier(r->comm);
    t0 = MPI_Wtime();
    rc = sts_writer_create(r->comm, r->ranks_dir, &o, &w);
    if (rc == STS_OK) {
        for (size_t i = 0; i < r->s.count; i++)
            if (sts_writer_add(w, &r->s.blocks[i]) != STS_OK)
                break; /* the commit fails on every rank with this rank's message */
        rc = sts_writer_commit(w, &st);
        snprintf(err, errlen, "%s", sts_writer_errmsg(w));
    } else {
        snprintf(err, errlen, "cannot create the writer for %s", r->ranks_dir);
    }
    sts_writer_free(w);
    out->seconds = MPI_Wtime() - t0;
    out->bytes = st.bytes_local;
    out->lib_seconds = st.seconds;
    return rc;
}

int bench_consolidate(bench_run *r, bench_sample *out, char *err, size_t errlen)
{
    sts_consolidate_opts o;
    sts_consolidate_stats st;
    sts_diag d;
    double t0;
    int rc;
    memset(out, 0, sizeof *out);
    memset(&st, 0, sizeof st);
    memset(&d, 0, sizeof d);
    clear_dir(r, r->cons_dir);
    bench_settle(r);
    sts_consolidate_opts_init(&o);
    o.fsync = r->a.fsync;
    MPI_Barrier(r->comm);
    t0 = MPI_Wtime();
    rc = sts_consolidate(r->comm, r->ranks_dir, r->cons_dir, &o, &st, &d);
    out->seconds = MPI_Wtime() - t0;
    out->bytes = st.bytes_local;
    out->lib_seconds = st.seconds;
    if (rc != STS_OK)
        snprintf(err, errlen, "%s", d.message);
    return rc;
}

/* What the load phase reads: the consolidated checkpoint when this run makes one. */
static const char *load_source(const bench_run *r)
{
    return (r->a.phases & (1u << BENCH_CONSOLIDATE)) ? r->cons_dir : r->ranks_dir;
}

/*
 * Collective.  Opens the load source, plans this rank's share under the run's
 * strategy and runs one offset-read pass (comparing with the generator when
 * check is set).  The buffers are made on the first call, before the clock.
 */
static int load_once(bench_run *r, int check, load_pass *p, double *t0, char *err, size_t errlen)
{
    sts_reader *rd = NULL;
    share_block *bl = NULL;
    share_opts so = {r->a.strategy, 0};
    size_t nb = 0;
    sts_diag d;
    MPI_Info info;
    int rc, mine;
    memset(p, 0, sizeof *p);
    memset(&d, 0, sizeof d);
    if (!r->lb_ready) {
        rc = load_bufs_init(r->comm, &r->lb, r->a.batch, err, errlen);
        if (rc != STS_OK)
            return rc;
        r->lb_ready = 1;
    }
    bench_settle(r);
    /* As `stshard load` by default: block records stay on their owner ranks. */
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_metadata", "distributed");
    MPI_Barrier(r->comm);
    *t0 = MPI_Wtime();
    rc = sts_reader_open(r->comm, load_source(r), info, &rd, &d);
    MPI_Info_free(&info);
    if (rc != STS_OK) {
        snprintf(err, errlen, "%s", d.message);
        return rc;
    }
    r->load_tensors = sts_reader_count(rd);
    mine = share_of(rd, &so, r->me, r->np, &bl, &nb, err, errlen) == 0 ? STS_OK : STS_E_UNSUPPORTED;
    rc = share_agree(r->comm, mine, err, errlen);
    if (rc == STS_OK)
        rc = load_pass_run(r->comm, rd, bl, nb, r->a.batch, check, r->a.seed, &r->lb, p, err,
                           errlen);
    free(bl);
    sts_reader_free(rd);
    return rc;
}

int bench_load(bench_run *r, bench_sample *out, char *err, size_t errlen)
{
    load_pass p;
    double t0 = 0;
    int rc = load_once(r, 0, &p, &t0, err, errlen);
    memset(out, 0, sizeof *out);
    out->seconds = MPI_Wtime() - t0;
    out->bytes = p.needed;
    out->lib_seconds = p.seconds;
    return rc;
}

int bench_check(bench_run *r, char *err, size_t errlen)
{
    load_pass p;
    uint64_t mine[2], sum[2] = {0, 0};
    double t0;
    int rc = load_once(r, 1, &p, &t0, err, errlen);
    if (rc != STS_OK)
        return rc;
    mine[0] = p.elements;
    mine[1] = p.mismatches;
    MPI_Allreduce(mine, sum, 2, MPI_UINT64_T, MPI_SUM, r->comm);
    r->checked = 1;
    r->check_elements = sum[0];
    r->check_mismatches = sum[1];
    if (sum[1])
        load_report_mismatch(r->comm, "bench", &p);
    return STS_OK;
}
