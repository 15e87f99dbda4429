/*
 * cmd_reshard.c - `stshard reshard INDIR OUTDIR`: reads a checkpoint in any
 * of the three forms (index.json + model files, one model.safetensors, rank
 * files) and writes one rank file per rank (SPEC 2) with a new sharding.
 *
 * Each rank reads only the bytes of its new blocks (offset reads, in rounds
 * of at most --batch bytes) and hands them to the sharded writer; the full
 * model is never assembled anywhere.  Memory bound: a rank holds its new
 * share (its blocks, replicated tensors included) from the reads to the
 * writer's commit, because the writer borrows block buffers until commit.
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
            "  --batch SIZE   bytes read per rank per read call (default 256MiB)\n"
            "  --force        replace the rank files of an existing checkpoint in OUTDIR\n"
            "  --fsync        sync the files before publishing them\n"
            "  --json         print the summary as JSON\n"
            "  --help         this text\n\n"
            "Memory: each rank holds its new share until the files are written.\n");
}

static int parse_args(int argc, char **argv, reshard_args *a, int me)
{
    enum { O_STRATEGY = 256, O_DIM, O_BATCH, O_FORCE, O_FSYNC, O_JSON };
    static const struct option opts[] = {{"strategy", required_argument, NULL, O_STRATEGY},
                                         {"dim", required_argument, NULL, O_DIM},
                                         {"batch", required_argument, NULL, O_BATCH},
                                         {"force", no_argument, NULL, O_FORCE},
                                         {"fsync", no_argument, NULL, O_FSYNC},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, dim_set = 0;
    memset(a, 0, sizeof *a);
    a->so.strategy = MODEL_ROWS;
    a->batch = (uint64_t)256 << 20;
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

/* This rank's new share: one buffer per block. */
typedef struct share_data {
    share_block *blocks;
    unsigned char **data;
    size_t n;
    uint64_t bytes;
} share_data;

static int alloc_share(share_data *s)
{
    s->data = calloc(s->n ? s->n : 1, sizeof *s->data);
    if (!s->data)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        s->data[i] = malloc(s->blocks[i].bytes ? s->blocks[i].bytes : 1);
        if (!s->data[i])
            return -1;
        s->bytes += s->blocks[i].bytes;
    }
    return 0;
}

#define ROUND_CAP 4096

/*
 * Collective.  Reads every block of the share into its buffer, in rounds of
 * dimension-0 ranges (each a contiguous piece of the block's buffer).  The
 * rounds are local reads; one agreement at the end.
 */
static int read_share(MPI_Comm comm, sts_reader *r, const reshard_args *a, share_data *s,
                      double *seconds, char *err, size_t errlen)
{
    share_walk w;
    share_chunk *c = calloc(ROUND_CAP, sizeof *c);
    sts_read_req *q = calloc(ROUND_CAP, sizeof *q);
    int rc = c && q ? STS_OK : STS_E_NOMEM;
    double t0 = MPI_Wtime();
    if (rc != STS_OK)
        snprintf(err, errlen, "out of memory");
    share_walk_init(&w, s->blocks, s->n, a->batch, 1);
    while (rc == STS_OK && share_walk_more(&w)) {
        uint64_t bytes;
        size_t n = share_walk_round(&w, c, ROUND_CAP, &bytes);
        for (size_t i = 0; i < n; i++) {
            const sts_global_tensor *t = c[i].b->t;
            q[i].name = t->name;
            q[i].dtype = t->dtype;
            q[i].ndim = t->ndim;
            q[i].offsets = c[i].off;
            q[i].shape = c[i].shape;
            q[i].buf = s->data[c[i].b - s->blocks] + c[i].buf_off;
        }
        rc = sts_reader_read_local(r, q, n);
        if (rc != STS_OK)
            snprintf(err, errlen, "%s", sts_reader_errmsg(r));
    }
    *seconds = MPI_Wtime() - t0;
    free(c);
    free(q);
    return share_agree(comm, rc, err, errlen);
}

/* Collective.  Writes the share as this rank's rank file. */
static int write_share(MPI_Comm comm, const reshard_args *a, const share_data *s,
                       sts_save_stats *st, char *err, size_t errlen)
{
    sts_save_opts o;
    sts_writer *w = NULL;
    int rc;
    sts_save_opts_init(&o);
    o.force = a->force;
    o.fsync = a->fsync;
    rc = sts_writer_create(comm, a->out, &o, &w);
    if (rc != STS_OK) {
        snprintf(err, errlen, "cannot create the writer for %s", a->out);
        return rc;
    }
    for (size_t i = 0; i < s->n; i++) {
        const share_block *b = &s->blocks[i];
        sts_block blk = {b->t->name, b->t->dtype, b->t->ndim, b->t->shape,
                         b->off,     b->shape,    s->data[i]};
        if (sts_writer_add(w, &blk) != STS_OK)
            break; /* the commit reports it on every rank */
    }
    rc = sts_writer_commit(w, st);
    snprintf(err, errlen, "%s", sts_writer_errmsg(w));
    sts_writer_free(w);
    return rc;
}

static void report(const reshard_args *a, const sts_reader *r, int np, double read_s,
                   const sts_save_stats *st, uint64_t read_total)
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
               "\"files\": %llu, \"bytes_written\": %llu, \"write_seconds\": %.6f}\n",
               model_strategy_name(a->so.strategy), a->so.dim, np, sts_reader_file_count(r),
               sts_reader_count(r), (unsigned long long)read_total, read_s,
               (unsigned long long)st->files_total, (unsigned long long)st->bytes_total,
               st->seconds);
        return;
    }
    printf("reshard: %zu files -> %llu rank files (%d ranks, %s), %zu tensors; read %s in %.3f s "
           "(%.2f GiB/s), wrote %s in %.3f s (%.2f GiB/s)\n",
           sts_reader_file_count(r), (unsigned long long)st->files_total, np,
           model_strategy_name(a->so.strategy), sts_reader_count(r),
           cli_format_bytes(read_total, b1, sizeof b1), read_s,
           read_s > 0 ? (double)read_total / read_s / gib : 0.0,
           cli_format_bytes(st->bytes_total, b2, sizeof b2), st->seconds,
           st->seconds > 0 ? (double)st->bytes_total / st->seconds / gib : 0.0);
}

/* Collective.  Everything after argument parsing; returns an agreed code. */
static int reshard(MPI_Comm comm, const reshard_args *a, int me, int np, char *err, size_t errlen)
{
    sts_reader *r = NULL;
    share_data s = {NULL, NULL, 0, 0};
    sts_save_stats st;
    sts_read_stats rs;
    sts_diag d;
    double read_s = 0, maxs = 0;
    uint64_t read_total = 0;
    int rc, mine, all = 0;
    rc = sts_reader_open(comm, a->in, MPI_INFO_NULL, &r, &d);
    if (rc != STS_OK) {
        snprintf(err, errlen, "%s", d.message);
        return rc;
    }
    mine = share_of(r, &a->so, me, np, &s.blocks, &s.n, err, errlen) == 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
    rc = all ? STS_OK : STS_E_UNSUPPORTED;
    if (rc == STS_OK) {
        mine = alloc_share(&s) == 0;
        MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
        if (!all) {
            snprintf(err, errlen, "out of memory for a share of %llu bytes",
                     (unsigned long long)s.bytes);
            rc = STS_E_NOMEM;
        }
    }
    if (rc == STS_OK)
        rc = read_share(comm, r, a, &s, &read_s, err, errlen);
    if (rc == STS_OK)
        rc = write_share(comm, a, &s, &st, err, errlen);
    if (rc == STS_OK) {
        sts_reader_stats(r, &rs);
        MPI_Allreduce(&rs.bytes_read, &read_total, 1, MPI_UINT64_T, MPI_SUM, comm);
        MPI_Allreduce(&read_s, &maxs, 1, MPI_DOUBLE, MPI_MAX, comm);
        if (me == 0)
            report(a, r, np, maxs, &st, read_total);
    }
    for (size_t i = 0; s.data && i < s.n; i++)
        free(s.data[i]);
    free(s.data);
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
