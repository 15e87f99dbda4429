/*
 * cmd_bench.c - `stshard bench`: an IOR-style I/O throughput harness for the
 * product's phases.  Every rank builds its share of a synthetic model once;
 * then each iteration runs the raw MPI-IO baselines (with --baseline) and the
 * selected phases (save, consolidate, load) in a private directory, timing
 * each the same way (bench.h).  The report gives GiB/s (max, min, mean over
 * iterations), time, bytes, ranks and per-rank imbalance, and each phase as a
 * fraction of the raw throughput; --json keeps every raw figure.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "loadpass.h"
#include "share.h"

#define PHASE_BIT(op) (1u << (op))
#define ALL_PHASES    (PHASE_BIT(BENCH_SAVE) | PHASE_BIT(BENCH_CONSOLIDATE) | PHASE_BIT(BENCH_LOAD))

static void bench_usage(FILE *f)
{
    fprintf(f,
            "Usage: mpirun -n P stshard bench [options]\n\n"
            "Times stshard's phases the way IOR times a file system: each iteration saves a\n"
            "synthetic model (held in memory by the ranks, sharded by a strategy) as rank\n"
            "files, consolidates them into a Hugging Face checkpoint and loads every rank's\n"
            "share back with offset reads.  Prints each run as it ends, then GiB/s (max, min,\n"
            "mean, standard deviation over the iterations), mean time, bytes, ranks and the\n"
            "per-rank imbalance of each phase; with --baseline also raw MPI-IO writes and\n"
            "reads of the same byte count and each phase as a fraction of them.\n\n"
            "Options:\n"
            "  --model PRESET:SIZE   llama or mixed, scaled to SIZE (default llama:1GiB)\n"
            "  --strategy S          tp (default), row, col, mesh2d: as `stshard save`; the\n"
            "                        load reads each rank's share under the same strategy\n"
            "  --dtype NAME          weight dtype (default BF16)\n"
            "  --seed S              seed of the element values (default 0)\n"
            "  --phases LIST         comma-separated, from save,consolidate,load (default all);\n"
            "                        'none' with --baseline times the baselines alone.  A\n"
            "                        phase not listed but needed as input runs once, untimed\n"
            "  --iterations K        repetitions of every operation (default 3)\n"
            "  --fsync               sync every file before it counts as written\n"
            "  --drop-caches         drop the page cache before every operation, so reads\n"
            "                        come from the device (root only; else reported as\n"
            "                        skipped)\n"
            "  --baseline            also time file-per-process and shared-file MPI-IO\n"
            "                        writes and reads of the model's byte count\n"
            "  --transfer-size SIZE  baseline transfer size (default 16MiB, at most 1GiB)\n"
            "  --batch SIZE          load: bytes read per rank per round (default 64MiB)\n"
            "  --check               after the iterations, read the last output back and\n"
            "                        compare every element with the generator (untimed)\n"
            "  --dir DIR             where to work (default .): a new directory\n"
            "                        DIR/stshard-bench.XXXXXX is made and removed at the end\n"
            "  --keep                keep that directory (rank files, consolidated checkpoint)\n"
            "  --json FILE           write every raw figure, the MPI-IO component, the hints,\n"
            "                        host, ranks and date as JSON ('-' for stdout)\n"
            "  --help                this text\n\n"
            "Timing: every node syncs (untimed, so no operation pays for the writeback of\n"
            "the one before), all ranks leave a barrier, and an operation's time is the\n"
            "longest rank's interval from there to the end of its part, opens and closes\n"
            "included.\n"
            "GiB/s = bytes / time with GiB = 2^30 bytes.  Imbal(B) and Imbal(t) are the\n"
            "largest rank's bytes and time over the mean of all ranks (1.00 = balanced).\n");
}

/*
 * Parses --phases: bits of the product phases, or 0 for "none".  On error
 * bad receives the offending item.
 */
static int parse_phases(const char *s, unsigned *out, char *bad, size_t badlen)
{
    const char *p = s;
    *out = 0;
    snprintf(bad, badlen, "%s", s);
    if (strcmp(s, "none") == 0)
        return 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (int op = BENCH_SAVE; op <= BENCH_LOAD; op++) {
            const char *name = bench_op_name((bench_op)op);
            if (len == strlen(name) && strncmp(p, name, len) == 0) {
                *out |= PHASE_BIT(op);
                found = 1;
            }
        }
        if (!found) {
            snprintf(bad, badlen, "%.*s", (int)len, p);
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return *out ? 0 : -1;
}

enum {
    O_MODEL = 256,
    O_STRATEGY,
    O_DTYPE,
    O_SEED,
    O_PHASES,
    O_ITER,
    O_TRANSFER,
    O_BATCH,
    O_FSYNC,
    O_DROP,
    O_KEEP,
    O_BASE,
    O_CHECK,
    O_DIR,
    O_JSON
};

/* An option with a value to check; returns CLI_OK or the usage status (printed on rank 0). */
static int parse_value(int c, bench_args *a, int me)
{
    char bad[64];
    switch (c) {
    case O_STRATEGY:
        if (model_strategy_parse(optarg, &a->strategy) != 0)
            return me ? CLI_USAGE : cli_usage_error("bench", "unknown strategy '%s'", optarg);
        return CLI_OK;
    case O_DTYPE:
        if (sts_dtype_from_name(optarg, strlen(optarg), &a->dtype) != STS_OK)
            return me ? CLI_USAGE : cli_usage_error("bench", "unknown dtype '%s'", optarg);
        return CLI_OK;
    case O_SEED:
        if (cli_parse_u64(optarg, &a->seed) != 0)
            return me ? CLI_USAGE : cli_usage_error("bench", "bad seed '%s'", optarg);
        return CLI_OK;
    case O_PHASES:
        if (parse_phases(optarg, &a->phases, bad, sizeof bad) != 0)
            return me ? CLI_USAGE
                      : cli_usage_error("bench",
                                        "--phases: unknown phase '%s' (save, consolidate, "
                                        "load, or none)",
                                        bad);
        return CLI_OK;
    case O_ITER:
        if (cli_parse_u64(optarg, &a->iterations) != 0 || a->iterations == 0 ||
            a->iterations > BENCH_MAX_ITERATIONS)
            return me ? CLI_USAGE
                      : cli_usage_error("bench", "--iterations must be 1..%d, not '%s'",
                                        BENCH_MAX_ITERATIONS, optarg);
        return CLI_OK;
    case O_TRANSFER:
        if (cli_parse_size(optarg, &a->transfer) != 0 || a->transfer == 0 ||
            a->transfer > ((uint64_t)1 << 30))
            return me ? CLI_USAGE
                      : cli_usage_error("bench", "--transfer-size must be 1 byte..1GiB, not '%s'",
                                        optarg);
        return CLI_OK;
    case O_BATCH:
        if (cli_parse_size(optarg, &a->batch) != 0 || a->batch == 0)
            return me ? CLI_USAGE : cli_usage_error("bench", "bad --batch '%s'", optarg);
        return CLI_OK;
    default:
        return me ? CLI_USAGE : cli_usage_error("bench", "unhandled option");
    }
}

static int parse_args(int argc, char **argv, bench_args *a, int me)
{
    static const struct option opts[] = {{"model", required_argument, NULL, O_MODEL},
                                         {"strategy", required_argument, NULL, O_STRATEGY},
                                         {"dtype", required_argument, NULL, O_DTYPE},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"phases", required_argument, NULL, O_PHASES},
                                         {"iterations", required_argument, NULL, O_ITER},
                                         {"transfer-size", required_argument, NULL, O_TRANSFER},
                                         {"batch", required_argument, NULL, O_BATCH},
                                         {"fsync", no_argument, NULL, O_FSYNC},
                                         {"drop-caches", no_argument, NULL, O_DROP},
                                         {"keep", no_argument, NULL, O_KEEP},
                                         {"baseline", no_argument, NULL, O_BASE},
                                         {"check", no_argument, NULL, O_CHECK},
                                         {"dir", required_argument, NULL, O_DIR},
                                         {"json", required_argument, NULL, O_JSON},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, rc;
    memset(a, 0, sizeof *a);
    a->model = "llama:1GiB";
    a->strategy = MODEL_TP;
    a->dtype = STS_BF16;
    a->phases = ALL_PHASES;
    a->iterations = 3;
    a->transfer = (uint64_t)16 << 20;
    a->batch = (uint64_t)64 << 20;
    a->dir = ".";
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            a->model = optarg;
            break;
        case O_FSYNC:
            a->fsync = 1;
            break;
        case O_DROP:
            a->drop_caches = 1;
            break;
        case O_KEEP:
            a->keep = 1;
            break;
        case O_BASE:
            a->baseline = 1;
            break;
        case O_CHECK:
            a->check = 1;
            break;
        case O_DIR:
            a->dir = optarg;
            break;
        case O_JSON:
            a->json = optarg;
            break;
        case 'h':
            if (me == 0)
                bench_usage(stdout);
            return -1;
        case '?':
            return me ? CLI_USAGE
                      : cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        default:
            if ((rc = parse_value(c, a, me)) != CLI_OK)
                return rc;
        }
    }
    if (optind != argc)
        return me ? CLI_USAGE : cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (a->phases == 0 && !a->baseline)
        return me ? CLI_USAGE : cli_usage_error("bench", "--phases none needs --baseline");
    if (a->check && a->phases == 0)
        return me ? CLI_USAGE : cli_usage_error("bench", "--check needs a phase to check");
    return CLI_OK;
}

/* "stshard bench ARGS..." for the report. */
static char *join_cmdline(int argc, char **argv)
{
    size_t len = 16;
    char *s;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "stshard");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

/* mkdir -p; 0 or an errno value. */
static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    int err = 0;
    if (!p)
        return ENOMEM;
    for (char *s = p + 1; !err; s++) {
        int end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            err = errno;
        if (end)
            break;
        *s = '/';
    }
    free(p);
    return err;
}

/*
 * Collective.  Rank 0 makes DIR/stshard-bench.XXXXXX (mkdtemp: a fresh name
 * nobody else uses, so removing it at the end removes only our files) and
 * broadcasts the path.
 */
static int make_workdir(bench_run *r, char *err, size_t errlen)
{
    char path[4096] = "";
    int rc = STS_OK, e = 0;
    if (r->me == 0) {
        snprintf(path, sizeof path, "%s/stshard-bench.XXXXXX", r->a.dir);
        if ((e = mkdir_p(r->a.dir)) != 0 || !mkdtemp(path)) {
            e = e ? e : errno;
            snprintf(err, errlen, "%s: cannot make a work directory: %s", r->a.dir, strerror(e));
            rc = e == ENOENT ? STS_E_NOENT : e == EACCES || e == EPERM ? STS_E_ACCESS : STS_E_IO;
        }
    }
    rc = share_agree(r->comm, rc, err, errlen);
    if (rc != STS_OK)
        return rc;
    MPI_Bcast(path, (int)sizeof path, MPI_CHAR, 0, r->comm);
    r->work = strdup(path);
    r->ranks_dir = malloc(strlen(path) + 16);
    r->cons_dir = malloc(strlen(path) + 16);
    rc = r->work && r->ranks_dir && r->cons_dir ? STS_OK : STS_E_NOMEM;
    if (rc == STS_OK) {
        sprintf(r->ranks_dir, "%s/ranks", path);
        sprintf(r->cons_dir, "%s/consolidated", path);
    }
    snprintf(err, errlen, "out of memory");
    return share_agree(r->comm, rc, err, errlen);
}

/* Collective.  The model and this rank's share of it (when a phase needs one). */
static int build_model(bench_run *r, char *err, size_t errlen)
{
    int rc = model_build(r->a.model, r->a.dtype, &r->m, err, errlen), all = 0;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, r->comm);
    if (all == -1) /* a bad spec fails alike on every rank */
        return STS_E_USAGE;
    if (all != 0) {
        if (rc == 0)
            snprintf(err, errlen, "another rank ran out of memory");
        return STS_E_NOMEM;
    }
    if (r->a.phases == 0)
        return STS_OK;
    rc = shard_build(&r->m, r->a.strategy, r->a.seed, r->me, r->np, &r->s);
    if (rc != STS_OK)
        snprintf(err, errlen, "out of memory while building the model (%s)", r->a.model);
    return share_agree(r->comm, rc, err, errlen);
}

/* Collective.  One timed operation, recorded and printed. */
static int run_op(bench_run *r, bench_op op, char *err, size_t errlen)
{
    bench_sample s;
    int rc;
    switch (op) {
    case BENCH_SAVE:
        rc = bench_save(r, &s, err, errlen);
        break;
    case BENCH_CONSOLIDATE:
        rc = bench_consolidate(r, &s, err, errlen);
        break;
    case BENCH_LOAD:
        rc = bench_load(r, &s, err, errlen);
        break;
    case BENCH_FPP_WRITE:
    case BENCH_FPP_READ:
    case BENCH_SHARED_WRITE:
    case BENCH_SHARED_READ:
        rc = bench_raw(r, op, &s, err, errlen);
        break;
    case BENCH_NOPS:
    default:
        rc = STS_E_INTERNAL;
        break;
    }
    if (rc != STS_OK) {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s: %s", bench_op_name(op), err);
        snprintf(err, errlen, "%s", tmp);
        return rc;
    }
    rc = bench_record(r, op, &s);
    if (rc != STS_OK)
        snprintf(err, errlen, "out of memory for the samples");
    else if (r->me == 0)
        bench_print_sample(r, op);
    return rc;
}

/* Collective.  Inputs of the timed phases that are not themselves timed. */
static int setup(bench_run *r, char *err, size_t errlen)
{
    bench_sample s;
    int rc;
    if (!(r->a.phases & ~PHASE_BIT(BENCH_SAVE)) || (r->a.phases & PHASE_BIT(BENCH_SAVE)))
        return STS_OK;
    if (r->me == 0)
        printf("%-13s (untimed: the input of the timed phases)\n", "setup-save");
    rc = bench_save(r, &s, err, errlen);
    shard_free(&r->s); /* no timed save needs it again */
    return rc;
}

static int iterate(bench_run *r, char *err, size_t errlen)
{
    static const bench_op raw[] = {BENCH_FPP_WRITE, BENCH_FPP_READ, BENCH_SHARED_WRITE,
                                   BENCH_SHARED_READ};
    int rc = setup(r, err, errlen);
    for (uint64_t it = 0; rc == STS_OK && it < r->a.iterations; it++) {
        for (size_t i = 0; rc == STS_OK && r->a.baseline && i < 4; i++)
            rc = run_op(r, raw[i], err, errlen);
        if (r->a.baseline)
            bench_raw_cleanup(r);
        for (int op = BENCH_SAVE; rc == STS_OK && op <= BENCH_LOAD; op++)
            if (r->a.phases & PHASE_BIT(op))
                rc = run_op(r, (bench_op)op, err, errlen);
    }
    if (rc == STS_OK && r->a.check)
        rc = bench_check(r, err, errlen);
    return rc;
}

static void run_free(bench_run *r)
{
    for (int op = 0; op < BENCH_NOPS; op++)
        bench_series_free(&r->ops[op]);
    shard_free(&r->s);
    load_bufs_free(&r->lb);
    model_free(&r->m);
    bench_env_free(&r->env);
    free(r->work);
    free(r->ranks_dir);
    free(r->cons_dir);
    free(r->a.cmdline);
}

int cmd_bench(int argc, char **argv)
{
    bench_run r;
    char err[1100] = "";
    int rc, status;

    memset(&r, 0, sizeof r);
    r.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(r.comm, &r.me);
    MPI_Comm_size(r.comm, &r.np);
    rc = parse_args(argc, argv, &r.a, r.me);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    r.a.cmdline = join_cmdline(argc, argv);
    rc = build_model(&r, err, sizeof err);
    if (rc == STS_E_USAGE) {
        if (r.me == 0)
            cli_usage_error("bench", "%s", err);
        run_free(&r);
        return CLI_USAGE;
    }
    if (rc == STS_OK)
        rc = bench_json_open(&r, err, sizeof err);
    if (rc == STS_OK)
        rc = make_workdir(&r, err, sizeof err);
    if (rc == STS_OK)
        rc = bench_env_init(&r, err, sizeof err);
    if (rc == STS_OK && r.me == 0)
        bench_print_header(&r);
    if (rc == STS_OK)
        rc = iterate(&r, err, sizeof err);
    bench_env_now(r.env.finished);
    bench_env_loadavg(r.env.load_finished);
    if (rc == STS_OK && r.me == 0) {
        bench_print_summary(&r);
        if (r.json)
            rc = bench_write_json(&r, err, sizeof err);
    }
    if (r.me == 0)
        bench_json_close(&r, rc == STS_OK);
    MPI_Bcast(&rc, 1, MPI_INT, 0, r.comm);
    if (r.me == 0 && rc != STS_OK)
        cli_error("bench", rc, "%s", err);
    if (r.work && r.me == 0) {
        if (r.a.keep)
            printf("Kept                : %s\n", r.work);
        else
            bench_rmtree(r.work);
    }
    status = sts_exit_status(rc);
    if (rc == STS_OK && r.checked && r.check_mismatches)
        status = CLI_INVALID; /* the data read back is not what was saved */
    run_free(&r);
    return status;
}
