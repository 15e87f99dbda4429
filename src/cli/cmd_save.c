/*
 * cmd_save.c - `stshard save`: builds a deterministic synthetic model in
 * every rank's memory, sharded by a strategy, and saves it with the sharded
 * writer: as rank files, as rank files consolidated in the same call
 * (--consolidate), or straight into the consolidated files (--direct).  It
 * measures the save (commit) alone, not the model generation.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "model.h"
#include "shard.h"

/* --buffer-size not given (sts_consolidate then uses its default). */
#define STS_SAVE_DIRECT_DEFAULT_UNSET 0

typedef struct save_args {
    const char *dir, *model, *mapping;
    model_strategy strategy;
    sts_dtype dtype;
    uint64_t seed;
    int fsync, force, json;
    /* Hugging Face output: --consolidate FINALDIR or --direct, and their options. */
    const char *consolidate, *reference;
    int keep_shards, direct, out_opts; /* out_opts: an output option was given */
    sts_consolidate_opts co;
} save_args;

static void save_usage(FILE *f)
{
    fprintf(f,
            "Usage: mpirun -n P stshard save OUTDIR --model PRESET:SIZE [options]\n"
            "       mpirun -n P stshard save OUTDIR --model ... --consolidate FINALDIR\n"
            "       mpirun -n P stshard save FINALDIR --model ... --direct\n\n"
            "Builds a synthetic transformer in every rank's memory, sharded across the\n"
            "ranks, and saves it as rank files shard-RRRRR-model-KKKKK-of-NNNNN.safetensors\n"
            "(one per rank and output file) with MPI-IO.  Prints the time, bytes and GiB/s\n"
            "of the save itself (model generation is not timed).\n\n"
            "Hugging Face output (model-KKKKK-of-NNNNN.safetensors + index.json), byte for\n"
            "byte what `stshard consolidate` of the rank files gives:\n"
            "  --consolidate FINALDIR  write the rank files into OUTDIR, consolidate them into\n"
            "                       FINALDIR in the same run, then remove them\n"
            "  --keep-shards        keep the rank files (with --consolidate)\n"
            "  --direct             no rank files: every rank writes its blocks straight\n"
            "                       into the model files in FINALDIR\n"
            "Output options (with --consolidate or --direct; as in `stshard consolidate`):\n"
            "  --reference DIR      output files of an existing checkpoint (also the mapping\n"
            "                       of the rank files)\n"
            "  --max-file-size SIZE split in canonical order, e.g. 5GB (default: --mapping,\n"
            "                       else one file)\n"
            "  --layout canonical|pytorch   header layout (default canonical)\n"
            "  --align BYTES        data sections start on this boundary (multiple of 8)\n"
            "  --drop-unmapped      leave out tensors the mapping lacks\n"
            "  --buffer-size SIZE   data buffer per rank: the consolidation's (default 4MiB),\n"
            "                       or the direct mode's exchange (default 32MiB)\n\n"
            "Options:\n"
            "  --model PRESET:SIZE  llama or mixed, scaled to SIZE (64MiB, 1GiB, 8GiB, 5GB)\n"
            "  --strategy S         tp (default: Megatron tensor parallelism), row, col, mesh2d\n"
            "  --dtype NAME         weight dtype: BF16 (default), F16, F32, F64, F8_E4M3, ...\n"
            "  --seed S             seed of the element values (default 0)\n"
            "  --mapping FILE       JSON {\"tensor\": file index}: several files per rank\n"
            "                       (and the output files of --consolidate/--direct)\n"
            "  --fsync              sync every file (and the directory) before publishing\n"
            "  --force              replace the rank files of an existing checkpoint (and\n"
            "                       existing output files)\n"
            "  --json               print the summary as JSON (includes peak RSS per rank)\n"
            "  --help               this text\n\n"
            "Strategies: tp splits q/k/v/gate/up and lm_head along dim 0, o/down along\n"
            "dim 1, the embedding along dim 0 (vocab), and replicates norms; row splits\n"
            "every tensor along dim 0; col along dim 1 (1-D tensors along dim 0); mesh2d\n"
            "splits dims 0 and 1 over a near-square grid of ranks (1-D tensors along dim 0\n"
            "over all ranks).  Scalars are replicated.  Uneven sizes split unevenly.\n");
}

enum {
    O_MODEL = 256,
    O_STRATEGY,
    O_DTYPE,
    O_SEED,
    O_MAPPING,
    O_FSYNC,
    O_FORCE,
    O_JSON,
    O_CONSOLIDATE,
    O_KEEP,
    O_DIRECT,
    O_REFERENCE,
    O_MAX_SIZE,
    O_LAYOUT,
    O_ALIGN,
    O_DROP,
    O_BUFFER
};

/* The Hugging Face output options: 0 when c is one of them, CLI_USAGE when bad, 1 otherwise. */
static int parse_output_opt(int c, save_args *a, int me)
{
    uint64_t n = 0;
    switch (c) {
    case O_CONSOLIDATE:
        a->consolidate = optarg;
        return 0;
    case O_KEEP:
        a->keep_shards = 1;
        return 0;
    case O_DIRECT:
        a->direct = 1;
        return 0;
    case O_REFERENCE:
        a->reference = optarg;
        break;
    case O_MAX_SIZE:
        if (cli_parse_size(optarg, &a->co.max_file_size) != 0 || a->co.max_file_size == 0)
            return me ? CLI_USAGE : cli_usage_error("save", "invalid size '%s'", optarg);
        break;
    case O_LAYOUT:
        if (strcmp(optarg, "canonical") != 0 && strcmp(optarg, "pytorch") != 0)
            return me ? CLI_USAGE : cli_usage_error("save", "--layout is canonical or pytorch");
        a->co.layout = strcmp(optarg, "pytorch") ? STS_LAYOUT_CANONICAL : STS_LAYOUT_PYTORCH;
        break;
    case O_ALIGN:
        if (cli_parse_size(optarg, &a->co.align) != 0 || a->co.align % 8 != 0)
            return me ? CLI_USAGE : cli_usage_error("save", "--align takes a multiple of 8");
        break;
    case O_DROP:
        a->co.drop_unmapped = 1;
        break;
    case O_BUFFER:
        if (cli_parse_size(optarg, &n) != 0 || n < 64 || n > SIZE_MAX)
            return me ? CLI_USAGE : cli_usage_error("save", "invalid --buffer-size '%s'", optarg);
        a->co.buffer_size = (size_t)n;
        break;
    default:
        return 1;
    }
    a->out_opts = 1;
    return 0;
}

/* Combinations of the output options. */
static int check_output_args(const save_args *a, int me)
{
    const char *why = NULL;
    if (a->direct && a->consolidate)
        why = "--direct and --consolidate exclude each other";
    else if (a->keep_shards && !a->consolidate)
        why = "--keep-shards needs --consolidate";
    else if (a->out_opts && !a->consolidate && !a->direct)
        why = "output options need --consolidate or --direct";
    else if (a->mapping && a->reference)
        why = "--mapping and --reference exclude each other";
    else if (a->co.drop_unmapped && !a->mapping && !a->reference)
        why = "--drop-unmapped needs a mapping";
    if (!why)
        return CLI_OK;
    return me ? CLI_USAGE : cli_usage_error("save", "%s", why);
}

static int parse_args(int argc, char **argv, save_args *a, int me)
{
    static const struct option opts[] = {{"model", required_argument, NULL, O_MODEL},
                                         {"strategy", required_argument, NULL, O_STRATEGY},
                                         {"dtype", required_argument, NULL, O_DTYPE},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"mapping", required_argument, NULL, O_MAPPING},
                                         {"fsync", no_argument, NULL, O_FSYNC},
                                         {"force", no_argument, NULL, O_FORCE},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"consolidate", required_argument, NULL, O_CONSOLIDATE},
                                         {"keep-shards", no_argument, NULL, O_KEEP},
                                         {"direct", no_argument, NULL, O_DIRECT},
                                         {"reference", required_argument, NULL, O_REFERENCE},
                                         {"max-file-size", required_argument, NULL, O_MAX_SIZE},
                                         {"layout", required_argument, NULL, O_LAYOUT},
                                         {"align", required_argument, NULL, O_ALIGN},
                                         {"drop-unmapped", no_argument, NULL, O_DROP},
                                         {"buffer-size", required_argument, NULL, O_BUFFER},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, r;
    memset(a, 0, sizeof *a);
    sts_consolidate_opts_init(&a->co);
    a->co.buffer_size = STS_SAVE_DIRECT_DEFAULT_UNSET; /* 0: the library's default */
    a->strategy = MODEL_TP;
    a->dtype = STS_BF16;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if ((r = parse_output_opt(c, a, me)) != 1) {
            if (r != 0)
                return r;
            continue;
        }
        switch (c) {
        case O_MODEL:
            a->model = optarg;
            break;
        case O_STRATEGY:
            if (model_strategy_parse(optarg, &a->strategy) != 0)
                return me ? CLI_USAGE : cli_usage_error("save", "unknown strategy '%s'", optarg);
            break;
        case O_DTYPE:
            if (sts_dtype_from_name(optarg, strlen(optarg), &a->dtype) != STS_OK)
                return me ? CLI_USAGE : cli_usage_error("save", "unknown dtype '%s'", optarg);
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &a->seed) != 0)
                return me ? CLI_USAGE : cli_usage_error("save", "bad seed '%s'", optarg);
            break;
        case O_MAPPING:
            a->mapping = optarg;
            break;
        case O_FSYNC:
            a->fsync = 1;
            break;
        case O_FORCE:
            a->force = 1;
            break;
        case O_JSON:
            a->json = 1;
            break;
        case 'h':
            if (me == 0)
                save_usage(stdout);
            return -1;
        default:
            return me ? CLI_USAGE
                      : cli_usage_error("save", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return me ? CLI_USAGE : cli_usage_error("save", "expected exactly one OUTDIR");
    if (!a->model)
        return me ? CLI_USAGE : cli_usage_error("save", "--model PRESET:SIZE is required");
    a->dir = argv[optind];
    /* The direct mode's exchange chunks are half the buffer: fewer, larger
     * rounds measured faster than consolidation's 4 MiB default (docs/save.md). */
    if (a->direct && a->co.buffer_size == STS_SAVE_DIRECT_DEFAULT_UNSET)
        a->co.buffer_size = (size_t)32 << 20;
    return check_output_args(a, me);
}

typedef struct run_info {
    const save_args *a;
    const model *m;
    int np;
    sts_save_stats st;
    uint64_t *rss, *share; /* per rank, rank 0 only */
    double cpu;            /* user + system seconds of the commit, summed over ranks */
} run_info;

/* User + system CPU seconds of this process so far. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void print_u64_list(const uint64_t *v, int n)
{
    for (int i = 0; i < n; i++)
        printf("%s%llu", i ? ", " : "", (unsigned long long)v[i]);
}

static void report(const run_info *r)
{
    const save_args *a = r->a;
    double gibs = r->st.seconds > 0
                      ? (double)r->st.bytes_total / r->st.seconds / (1024.0 * 1024.0 * 1024.0)
                      : 0.0;
    uint64_t rss = 0, share = 0;
    char b1[32], b2[32], b3[32];
    for (int i = 0; i < r->np; i++) {
        rss = r->rss[i] > rss ? r->rss[i] : rss;
        share = r->share[i] > share ? r->share[i] : share;
    }
    if (!a->json) {
        printf("save: %s in %.3f s, %.2f GiB/s, %d ranks, %llu files (%s, %s, %s, %zu tensors; "
               "peak RSS %s/rank, largest share %s)",
               cli_format_bytes(r->st.bytes_total, b1, sizeof b1), r->st.seconds, gibs, r->np,
               (unsigned long long)(a->direct ? r->st.output_files : r->st.files_total), a->model,
               model_strategy_name(a->strategy), sts_dtype_name(a->dtype), r->m->count,
               cli_format_bytes(rss * 1024, b2, sizeof b2), cli_format_bytes(share, b3, sizeof b3));
        if (a->direct)
            printf(" written directly -> %s\n", a->dir);
        else if (a->consolidate)
            printf(", consolidated into %llu file%s in %.3f s -> %s (rank files %s)\n",
                   (unsigned long long)r->st.output_files, r->st.output_files == 1 ? "" : "s",
                   r->st.consolidate_seconds, a->consolidate, a->keep_shards ? "kept" : "removed");
        else
            printf("\n");
        return;
    }
    printf("{\"command\": \"save\", \"dir\": ");
    cli_json_string(stdout, a->dir);
    printf(", \"mode\": \"%s\", \"output_dir\": ", a->direct        ? "direct"
                                                   : a->consolidate ? "consolidate"
                                                                    : "shards");
    cli_json_string(stdout, a->direct ? a->dir : a->consolidate ? a->consolidate : "");
    printf(", \"output_files\": %llu, \"consolidate_seconds\": %.6f, \"cpu_seconds\": %.6f",
           (unsigned long long)r->st.output_files, r->st.consolidate_seconds, r->cpu);
    printf(", \"model\": ");
    cli_json_string(stdout, a->model);
    printf(", \"strategy\": \"%s\", \"dtype\": \"%s\", \"seed\": %llu, \"fsync\": %s, "
           "\"ranks\": %d, \"files\": %llu, \"tensors\": %zu, \"bytes\": %llu, \"seconds\": %.6f, "
           "\"gib_per_s\": %.4f, \"vmhwm_kib\": [",
           model_strategy_name(a->strategy), sts_dtype_name(a->dtype), (unsigned long long)a->seed,
           a->fsync ? "true" : "false", r->np, (unsigned long long)r->st.files_total, r->m->count,
           (unsigned long long)r->st.bytes_total, r->st.seconds, gibs);
    print_u64_list(r->rss, r->np);
    printf("], \"share_bytes\": [");
    print_u64_list(r->share, r->np);
    printf("]}\n");
}

/* The collective part: writer, blocks, commit.  Returns an agreed STS_* code. */
static int save_model(MPI_Comm comm, const save_args *a, const shard *s, const sts_mapping *mapping,
                      run_info *r, char *err, size_t errlen)
{
    sts_save_opts o;
    sts_writer *w = NULL;
    cli_progress prog;
    int rc, me = 0;
    double cpu;
    sts_consolidate_opts co;
    MPI_Comm_rank(comm, &me);
    sts_save_opts_init(&o);
    o.mapping = mapping;
    o.fsync = a->fsync;
    o.force = a->force;
    o.consolidate_dir = a->consolidate;
    co = a->co;
    /* Dropping tensors is the output's business: the rank files keep every tensor. */
    if (co.drop_unmapped) {
        co.mapping = mapping;
        o.mapping = NULL;
    }
    o.consolidate = &co;
    o.keep_shards = a->keep_shards;
    o.direct = a->direct;
    if (me == 0 && !a->json && cli_stderr_is_tty()) {
        cli_progress_start(&prog, "save");
        o.progress = cli_progress_fn;
        o.progress_ud = &prog;
    }
    rc = sts_writer_create(comm, a->dir, &o, &w);
    if (rc != STS_OK) {
        snprintf(err, errlen, "cannot create the writer for %s", a->dir);
        return rc;
    }
    for (size_t i = 0; i < s->count; i++)
        if (sts_writer_add(w, &s->blocks[i]) != STS_OK)
            break; /* commit reports the failure on every rank */
    /* Start the clock together: otherwise the commit's time would include waiting for
     * the slowest rank to finish generating its part of the model. */
    MPI_Barrier(comm);
    cpu = cpu_seconds();
    rc = sts_writer_commit(w, &r->st);
    cpu = cpu_seconds() - cpu;
    /* CPU time is what a busy host distorts least: a figure to compare runs by. */
    MPI_Reduce(&cpu, &r->cpu, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (o.progress)
        cli_progress_end(&prog);
    snprintf(err, errlen, "%s", sts_writer_errmsg(w));
    sts_writer_free(w);
    return rc;
}

/* Every rank's peak RSS and model share, gathered to rank 0. */
static void gather_memory(MPI_Comm comm, const shard *s, run_info *r)
{
    uint64_t mine[2] = {cli_peak_rss_kib(), s->bytes}, *all = NULL;
    int me = 0;
    MPI_Comm_rank(comm, &me);
    if (me == 0)
        all = calloc(2 * (size_t)r->np, sizeof *all);
    MPI_Gather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, 0, comm);
    if (me != 0 || !all)
        return;
    r->rss = calloc((size_t)r->np, sizeof *r->rss);
    r->share = calloc((size_t)r->np, sizeof *r->share);
    for (int i = 0; r->rss && r->share && i < r->np; i++) {
        r->rss[i] = all[2 * i];
        r->share[i] = all[2 * i + 1];
    }
    free(all);
}

/* Loads --mapping (or the mapping of --reference) on every rank; the result is agreed. */
static int load_mapping(MPI_Comm comm, const save_args *a, sts_mapping **m, char *err,
                        size_t errlen)
{
    sts_diag d;
    int rc = STS_OK, all = STS_OK;
    *m = NULL;
    memset(&d, 0, sizeof d);
    if (a->mapping)
        rc = sts_mapping_load_json(a->mapping, m, &d);
    else if (a->reference)
        rc = sts_mapping_from_reference(a->reference, m, &d);
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all != STS_OK)
        snprintf(err, errlen, "%s", rc != STS_OK ? d.message : "another rank failed to load it");
    return all;
}

int cmd_save(int argc, char **argv)
{
    save_args a;
    model m;
    shard s;
    sts_mapping *mapping = NULL;
    run_info r;
    char err[1100] = "";
    int me = 0, np = 1, rc, all;
    MPI_Comm comm = MPI_COMM_WORLD;

    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    rc = parse_args(argc, argv, &a, me);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    /* A bad spec fails alike everywhere, but memory can run out on one rank only. */
    rc = model_build(a.model, a.dtype, &m, err, sizeof err);
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all != 0) {
        if (me == 0 && rc == -1)
            cli_usage_error("save", "%s", err);
        else if (me == 0)
            cli_error("save", STS_E_NOMEM, "%s", rc ? err : "another rank ran out of memory");
        model_free(&m);
        return all == -1 ? CLI_USAGE : sts_exit_status(STS_E_NOMEM);
    }
    memset(&r, 0, sizeof r);
    r.a = &a;
    r.m = &m;
    r.np = np;
    rc = shard_build(&m, a.strategy, a.seed, me, np, &s);
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all != STS_OK) {
        snprintf(err, sizeof err, "out of memory while building the model (%s)", a.model);
        rc = all;
    } else if ((rc = load_mapping(comm, &a, &mapping, err, sizeof err)) == STS_OK) {
        rc = save_model(comm, &a, &s, mapping, &r, err, sizeof err);
    }
    if (rc == STS_OK)
        gather_memory(comm, &s, &r);
    if (me == 0 && rc != STS_OK)
        cli_error("save", rc, "%s", err);
    else if (me == 0 && r.rss && r.share)
        report(&r);
    free(r.rss);
    free(r.share);
    sts_mapping_free(mapping);
    shard_free(&s);
    model_free(&m);
    return sts_exit_status(rc);
}
