/*
 * cmd_reshard.c - `stshard reshard INDIR OUTDIR`: reads a checkpoint in any
 * of the three forms (index.json + model files, one model.safetensors, rank
 * files) and writes one rank file per rank (docs/format.md §3) with a new sharding.
 *
 * The save streams: every rank declares its new blocks to the sharded writer
 * without data, sts_writer_begin plans the save and opens the files, then
 * the ranks read in lock-step rounds of at most --batch bytes each (the
 * collective sts_reader_read, which every rank joins in every round, with
 * nothing to read once its share is done) and hand each piece to
 * sts_writer_put, which writes it before returning.  So a rank holds one
 * round of data, never its share, and the full model is never assembled
 * anywhere.  Blocks of a replicated tensor that another rank stores are not
 * read at all.  A round starts only when every rank agrees (MPI_Allreduce),
 * so a failed read or put on one rank stops all of them at the same round;
 * the save is then dropped (the writer removes its temporary files) and
 * nothing is published.
 */
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "share.h"

typedef struct reshard_args {
    const char *in, *out;
    share_opts so;
    uint64_t batch;
    int force, fsync, json;
    const char *metadata;
} reshard_args;

static void reshard_usage(FILE *f)
{
    fprintf(f,
            "Usage: mpirun -n M stshard reshard INDIR OUTDIR [options]\n\n"
            "Rewrites a checkpoint as M rank files shard-RRRRR-model-00001-of-00001.safetensors\n"
            "with a new sharding.  INDIR is a consolidated checkpoint (index.json + model\n"
            "files), a model.safetensors (or its directory) or a directory of rank files, from\n"
            "any number of ranks.  Each rank reads only its new blocks; the full model is\n"
            "never built.\n\n"
            "Options:\n"
            "  --strategy S   row (default: dimension 0), col, tp, mesh2d: as `stshard save`\n"
            "  --dim D        with row: split dimension D (tensors with fewer dims: dim 0)\n"
            "  --batch SIZE   bytes read and written per rank per round (default 16MiB)\n"
            "  --force        replace the rank files of an existing checkpoint in OUTDIR\n"
            "  --fsync        sync the files before publishing them\n"
            "  --metadata M   distributed (default: each tensor's block list is held by one\n"
            "                 owner rank and fetched by the reads that need it) or replicated\n"
            "                 (every rank holds every block record)\n"
            "  --json         print the summary as JSON\n"
            "  --help         this text\n\n"
            "Memory: each rank holds one round of data (--batch bytes, or one row of dimension\n"
            "0 when a single row is larger) and the writer's staging buffer (up to 16MiB).\n");
}

static int parse_args(int argc, char **argv, reshard_args *a, int me)
{
    enum { O_STRATEGY = 256, O_DIM, O_BATCH, O_FORCE, O_FSYNC, O_JSON, O_META };
    static const struct option opts[] = {{"strategy", required_argument, NULL, O_STRATEGY},
                                         {"dim", required_argument, NULL, O_DIM},
                                         {"batch", required_argument, NULL, O_BATCH},
                                         {"force", no_argument, NULL, O_FORCE},
                                         {"fsync", no_argument, NULL, O_FSYNC},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"metadata", required_argument, NULL, O_META},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, dim_set = 0;
    memset(a, 0, sizeof *a);
    a->so.strategy = MODEL_ROWS;
    a->batch = (uint64_t)16 << 20;
    a->metadata = "distributed";
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_STRATEGY:
            if (model_strategy_parse(optarg, &a->so.strategy) != 0)
                return me ? CLI_USAGE : cli_usage_error("reshard", "unknown strategy '%s'", optarg);
            break;
        case O_DIM:
            if (share_parse_dim(optarg, &a->so.dim) != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("reshard", "--dim must be 0..%d", MODEL_MAX_DIMS - 1);
            dim_set = 1;
            break;
        case O_BATCH:
            if (cli_parse_size(optarg, &a->batch) != 0 || a->batch == 0)
                return me ? CLI_USAGE : cli_usage_error("reshard", "bad --batch '%s'", optarg);
            break;
        case O_FORCE:
            a->force = 1;
            break;
        case O_FSYNC:
            a->fsync = 1;
            break;
        case O_JSON:
            a->json = 1;
            break;
        case O_META:
            if (strcmp(optarg, "distributed") != 0 && strcmp(optarg, "replicated") != 0)
                return me ? CLI_USAGE
                          : cli_usage_error("reshard",
                                            "--metadata is distributed or replicated, "
                                            "not '%s'",
                                            optarg);
            a->metadata = optarg;
            break;
        case 'h':
            if (me == 0)
                reshard_usage(stdout);
            return -1;
        default:
            return me ? CLI_USAGE
                      : cli_usage_error("reshard", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 2)
        return me ? CLI_USAGE : cli_usage_error("reshard", "expected INDIR and OUTDIR");
    if (dim_set && a->so.strategy != MODEL_ROWS)
        return me ? CLI_USAGE : cli_usage_error("reshard", "--dim applies to --strategy row only");
    a->in = argv[optind];
    a->out = argv[optind + 1];
    return CLI_OK;
}

/*
 * Rank 0: writing into the input directory would let the writer's --force
 * remove input rank files, so it is refused (also for a file inside OUTDIR).
 */
static int same_place(const char *in, const char *out)
{
    char a[PATH_MAX], b[PATH_MAX];
    char *slash;
    if (!realpath(out, b) || !realpath(in, a))
        return 0;
    if (strcmp(a, b) == 0)
        return 1;
    slash = strrchr(a, '/');
    if (slash && slash != a)
        *slash = '\0';
    return strcmp(a, b) == 0;
}

/* This rank's part of the save: its share, the blocks of it that it stores, timings. */
typedef struct share_data {
    share_block *blocks, *stored;
    size_t n, nstored;
    double read_s, write_s; /* in sts_reader_read; in sts_writer_put and the commit */
} share_data;

#define ROUND_CAP 4096

/*
 * Collective.  Declares the share to a new writer (no data) and begins the
 * save; *out is the writer (also on failure, for its message).  Then keeps
 * the blocks this rank stores.
 */
static int begin_save(MPI_Comm comm, const reshard_args *a, share_data *s, sts_writer **out,
                      char *err, size_t errlen)
{
    sts_save_opts o;
    int rc;
    sts_save_opts_init(&o);
    o.force = a->force;
    o.fsync = a->fsync;
    rc = sts_writer_create(comm, a->out, &o, out);
    if (rc != STS_OK) {
        snprintf(err, errlen, "cannot create the writer for %s", a->out);
        return rc;
    }
    for (size_t i = 0; i < s->n; i++) {
        const share_block *b = &s->blocks[i];
        sts_block blk = {b->t->name, b->t->dtype, b->t->ndim, b->t->shape, b->off, b->shape, NULL};
        if (sts_writer_add(*out, &blk) != STS_OK)
            break; /* sts_writer_begin reports it on every rank */
    }
    rc = sts_writer_begin(*out);
    if (rc != STS_OK) {
        snprintf(err, errlen, "%s", sts_writer_errmsg(*out));
        return rc;
    }
    s->stored = s->blocks; /* compacted in place: only the stored blocks are used from here */
    for (size_t i = 0; i < s->n; i++) {
        int stores = 0;
        /* Cannot fail for a block added before a successful begin.  If it did, stores stays
         * 0 and the commit's byte count reports the block on every rank; returning here
         * would leave the other ranks in the exchange. */
        (void)sts_writer_stores(*out, s->blocks[i].t->name, &stores);
        if (stores)
            s->stored[s->nstored++] = s->blocks[i];
    }
    return STS_OK;
}

/* Local.  Room for a round of `bytes` in *buf. */
static int reserve(unsigned char **buf, uint64_t *cap, uint64_t bytes)
{
    unsigned char *p;
    if (bytes <= *cap)
        return STS_OK;
    p = realloc(*buf, bytes);
    if (!p)
        return STS_E_NOMEM;
    *buf = p;
    *cap = bytes;
    return STS_OK;
}

/* Local.  Hands the n chunks of a round, read into buf one after another, to the writer. */
static int put_round(sts_writer *w, const share_chunk *c, size_t n, const unsigned char *buf,
                     share_data *s, char *err, size_t errlen)
{
    double t0 = MPI_Wtime();
    int rc = STS_OK;
    for (size_t i = 0; i < n && rc == STS_OK; i++) {
        /* Dimension-0 chunks are contiguous byte ranges of their block, at buf_off. */
        rc = sts_writer_put(w, c[i].b->t->name, c[i].buf_off, buf, c[i].bytes);
        buf += c[i].bytes;
    }
    if (rc != STS_OK)
        snprintf(err, errlen, "%s", sts_writer_errmsg(w));
    s->write_s += MPI_Wtime() - t0;
    return rc;
}

/*
 * Collective.  Reads the stored blocks in rounds and puts them.  Every
 * round begins with an agreement (any rank with chunks left, any rank
 * failed), so every rank makes the same number of sts_reader_read calls
 * and all stop together; a rank done or failed reads nothing (n = 0).
 * Returns the agreed code.
 */
static int stream_share(MPI_Comm comm, sts_reader *r, sts_writer *w, const reshard_args *a,
                        share_data *s, char *err, size_t errlen)
{
    share_walk walk;
    share_chunk *c = calloc(ROUND_CAP, sizeof *c);
    sts_read_req *q = calloc(ROUND_CAP, sizeof *q);
    unsigned char *buf = NULL;
    uint64_t cap = 0;
    int rc = c && q ? STS_OK : STS_E_NOMEM;
    if (rc != STS_OK)
        snprintf(err, errlen, "out of memory");
    share_walk_init(&walk, s->stored, s->nstored, a->batch, 1);
    while (share_round_go(comm, rc == STS_OK && share_walk_more(&walk), rc != STS_OK)) {
        uint64_t bytes = 0, at = 0;
        size_t n = 0;
        int rrc;
        double t0;
        if (rc == STS_OK && share_walk_more(&walk))
            n = share_walk_round(&walk, c, ROUND_CAP, &bytes);
        if (reserve(&buf, &cap, bytes) != STS_OK) {
            snprintf(err, errlen, "out of memory for a round of %llu bytes",
                     (unsigned long long)bytes);
            rc = STS_E_NOMEM;
            n = 0; /* still joins the read */
        }
        for (size_t i = 0; i < n; i++) {
            const sts_global_tensor *t = c[i].b->t;
            q[i] = (sts_read_req){t->name, t->dtype, t->ndim, c[i].off, c[i].shape, buf + at};
            at += c[i].bytes;
        }
        t0 = MPI_Wtime();
        rrc = sts_reader_read(r, q, n);
        s->read_s += MPI_Wtime() - t0;
        if (rrc != STS_OK && rc == STS_OK) {
            /* Agreed by the reader: every rank fails in this same call. */
            rc = rrc;
            snprintf(err, errlen, "%s", sts_reader_errmsg(r));
        }
        if (rc == STS_OK)
            rc = put_round(w, c, n, buf, s, err, errlen);
    }
    free(c);
    free(q);
    free(buf);
    return share_agree(comm, rc, err, errlen);
}

static void report(const reshard_args *a, const sts_reader *r, int np, const double *secs,
                   const sts_save_stats *st, uint64_t read_total, uint64_t rss_kib)
{
    char b1[32], b2[32];
    double gib = 1024.0 * 1024.0 * 1024.0;
    if (a->json) {
        printf("{\"command\": \"reshard\", \"in\": ");
        cli_json_string(stdout, a->in);
        printf(", \"out\": ");
        cli_json_string(stdout, a->out);
        printf(", \"strategy\": \"%s\", \"dim\": %d, \"ranks\": %d, \"input_files\": %zu, "
               "\"tensors\": %zu, \"bytes_read\": %llu, \"read_seconds\": %.6f, "
               "\"files\": %llu, \"bytes_written\": %llu, \"write_seconds\": %.6f, "
               "\"seconds\": %.6f, \"batch\": %llu, \"max_vmhwm_kib\": %llu, "
               "\"metadata\": \"%s\"}\n",
               model_strategy_name(a->so.strategy), a->so.dim, np, sts_reader_file_count(r),
               sts_reader_count(r), (unsigned long long)read_total, secs[0],
               (unsigned long long)st->files_total, (unsigned long long)st->bytes_total, secs[1],
               st->seconds, (unsigned long long)a->batch, (unsigned long long)rss_kib, a->metadata);
        return;
    }
    printf("reshard: %zu files -> %llu rank files (%d ranks, %s), %zu tensors; read %s in %.3f s "
           "(%.2f GiB/s), wrote %s in %.3f s (%.2f GiB/s); %.3f s in all, peak RSS %.0f MiB\n",
           sts_reader_file_count(r), (unsigned long long)st->files_total, np,
           model_strategy_name(a->so.strategy), sts_reader_count(r),
           cli_format_bytes(read_total, b1, sizeof b1), secs[0],
           secs[0] > 0 ? (double)read_total / secs[0] / gib : 0.0,
           cli_format_bytes(st->bytes_total, b2, sizeof b2), secs[1],
           secs[1] > 0 ? (double)st->bytes_total / secs[1] / gib : 0.0, st->seconds,
           (double)rss_kib / 1024.0);
}

/* Collective.  The summary on rank 0: sums and maxima over ranks. */
static void summarize(MPI_Comm comm, const reshard_args *a, const sts_reader *r, int me, int np,
                      const share_data *s, const sts_save_stats *st)
{
    sts_read_stats rs;
    double mine[2] = {s->read_s, s->write_s}, secs[2] = {0, 0};
    uint64_t read_total = 0, rss = cli_peak_rss_kib(), max_rss = 0;
    sts_reader_stats(r, &rs);
    MPI_Allreduce(&rs.bytes_read, &read_total, 1, MPI_UINT64_T, MPI_SUM, comm);
    MPI_Allreduce(mine, secs, 2, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(&rss, &max_rss, 1, MPI_UINT64_T, MPI_MAX, comm);
    if (me == 0)
        report(a, r, np, secs, st, read_total, max_rss);
}

/* Collective.  Everything after argument parsing; returns an agreed code. */
static int reshard(MPI_Comm comm, const reshard_args *a, int me, int np, char *err, size_t errlen)
{
    sts_reader *r = NULL;
    sts_writer *w = NULL;
    share_data s;
    sts_save_stats st;
    sts_diag d;
    int rc, mine, all = 0;
    MPI_Info info = MPI_INFO_NULL;
    memset(&s, 0, sizeof s);
    MPI_Info_create(&info);
    MPI_Info_set(info, "stshard_metadata", a->metadata);
    rc = sts_reader_open(comm, a->in, info, &r, &d);
    MPI_Info_free(&info);
    if (rc != STS_OK) {
        snprintf(err, errlen, "%s", d.message);
        return rc;
    }
    mine = share_of(r, &a->so, me, np, &s.blocks, &s.n, err, errlen) == 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
    rc = all ? STS_OK : STS_E_UNSUPPORTED;
    if (rc == STS_OK)
        rc = begin_save(comm, a, &s, &w, err, errlen);
    if (rc == STS_OK)
        rc = stream_share(comm, r, w, a, &s, err, errlen);
    if (rc == STS_OK) {
        double t0 = MPI_Wtime();
        rc = sts_writer_commit(w, &st);
        s.write_s += MPI_Wtime() - t0;
        if (rc != STS_OK)
            snprintf(err, errlen, "%s", sts_writer_errmsg(w));
    }
    if (rc == STS_OK)
        summarize(comm, a, r, me, np, &s, &st);
    /* Without a commit the writer removes the files it began. */
    sts_writer_free(w);
    free(s.blocks);
    sts_reader_free(r);
    return rc;
}

int cmd_reshard(int argc, char **argv)
{
    reshard_args a;
    char err[1100] = "";
    int me = 0, np = 1, rc, same = 0;
    MPI_Comm comm = MPI_COMM_WORLD;

    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    rc = parse_args(argc, argv, &a, me);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if (me == 0)
        same = same_place(a.in, a.out);
    MPI_Bcast(&same, 1, MPI_INT, 0, comm);
    if (same)
        return me ? CLI_USAGE
                  : cli_usage_error("reshard", "OUTDIR must not be the input's directory");
    rc = reshard(comm, &a, me, np, err, sizeof err);
    if (me == 0 && rc != STS_OK)
        cli_error("reshard", rc, "%s", err);
    return sts_exit_status(rc);
}
