/*
 * cmd_consolidate.c - `stshard consolidate`: rank files -> Hugging Face
 * checkpoint, collectively over MPI_COMM_WORLD (see docs/consolidate.md).
 *
 * Every rank parses the same command line, so usage errors need no
 * communication.  Only rank 0 reads the mapping (the library plans from rank
 * 0's options); its result is broadcast before the collective call so no
 * rank is left waiting.  Rank 0 prints the messages, the progress line (on
 * a terminal only) and the one summary line.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"

static const char *const CMD = "consolidate";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: mpirun -n P stshard consolidate INDIR OUTDIR [OPTIONS]\n\n"
            "Merges the rank files in INDIR (PyTorch DCP save_sharded/save_distributed or\n"
            "stshard save) into model-KKKKK-of-NNNNN.safetensors files and\n"
            "model.safetensors.index.json in OUTDIR.  Any number of ranks works.\n\n"
            "Output files (at most one of):\n"
            "  --mapping FILE.json     {\"<tensor>\": file index, ...}\n"
            "  --reference MODEL_DIR   the files of an existing Hugging Face checkpoint\n"
            "  --max-file-size SIZE    split in canonical order, e.g. 5GB (default: one file)\n"
            "Options:\n"
            "  --layout canonical|pytorch  header layout (default canonical)\n"
            "  --align BYTES           start each data section on this boundary (multiple of 8)\n"
            "  --drop-unmapped         leave out tensors the mapping lacks (default: error)\n"
            "  --buffer-size SIZE      data buffer per rank; half is the largest transfer\n"
            "                          (default 4MiB; raise it on parallel file systems)\n"
            "  --fsync                 make the output durable before publishing it\n"
            "  --force                 replace existing output files\n"
            "  --json                  print the summary as JSON on stdout\n"
            "  -h, --help              this help\n");
}

/* A usage error: printed by rank 0 only (every rank parses the same argv). */
static int bad(int me, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(int me, const char *fmt, ...)
{
    va_list ap;
    char msg[512];
    if (me != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_usage_error(CMD, "%s", msg);
    return -1;
}

typedef struct args {
    const char *indir, *outdir, *mapping, *reference;
    sts_consolidate_opts o;
    int json;
} args;

/* Parses argv into a; returns -1 (usage error printed on rank 0), 0, or 1 for --help. */
static int parse(int argc, char **argv, args *a, int me)
{
    int nsel = 0;
    memset(a, 0, sizeof *a);
    sts_consolidate_opts_init(&a->o);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        if (!strcmp(s, "-h") || !strcmp(s, "--help"))
            return 1;
        if (s[0] != '-' || s[1] == '\0') {
            if (!a->indir)
                a->indir = s;
            else if (!a->outdir)
                a->outdir = s;
            else
                return bad(me, "unexpected argument '%s'", s);
            continue;
        }
        if (!strcmp(s, "--drop-unmapped")) {
            a->o.drop_unmapped = 1;
            continue;
        }
        if (!strcmp(s, "--fsync")) {
            a->o.fsync = 1;
            continue;
        }
        if (!strcmp(s, "--force")) {
            a->o.force = 1;
            continue;
        }
        if (!strcmp(s, "--json")) {
            a->json = 1;
            continue;
        }
        if (!v)
            return bad(me, "%s needs a value", s);
        i++;
        if (!strcmp(s, "--mapping")) {
            a->mapping = v;
            nsel++;
        } else if (!strcmp(s, "--reference")) {
            a->reference = v;
            nsel++;
        } else if (!strcmp(s, "--max-file-size")) {
            if (cli_parse_size(v, &a->o.max_file_size) || a->o.max_file_size == 0)
                return bad(me, "invalid size '%s'", v);
            nsel++;
        } else if (!strcmp(s, "--layout")) {
            if (strcmp(v, "canonical") && strcmp(v, "pytorch"))
                return bad(me, "--layout is canonical or pytorch");
            a->o.layout = strcmp(v, "pytorch") ? STS_LAYOUT_CANONICAL : STS_LAYOUT_PYTORCH;
        } else if (!strcmp(s, "--align")) {
            if (cli_parse_size(v, &a->o.align) || a->o.align % 8)
                return bad(me, "--align takes a multiple of 8");
        } else if (!strcmp(s, "--buffer-size")) {
            if (cli_parse_size(v, &n) || n < 64 || n > SIZE_MAX)
                return bad(me, "invalid --buffer-size '%s'", v);
            a->o.buffer_size = (size_t)n;
        } else {
            return bad(me, "unknown option '%s'", s);
        }
    }
    if (!a->outdir)
        return bad(me, "INDIR and OUTDIR are required");
    if (nsel > 1)
        return bad(me, "--mapping, --reference and --max-file-size exclude "
                       "each other");
    if (a->o.drop_unmapped && !a->mapping && !a->reference)
        return bad(me, "--drop-unmapped needs a mapping");
    return 0;
}

/* Rank 0 loads the mapping; every rank learns the outcome. */
static int load_mapping(const args *a, int me, sts_mapping **map)
{
    int rc = STS_OK;
    sts_diag d;
    *map = NULL;
    if (me == 0 && a->mapping)
        rc = sts_mapping_load_json(a->mapping, map, &d);
    else if (me == 0 && a->reference)
        rc = sts_mapping_from_reference(a->reference, map, &d);
    if (me == 0 && rc != STS_OK)
        cli_error(CMD, rc, "%s", d.message);
    if (MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        rc = STS_E_MPI;
    return rc;
}

/* This process's CPU time so far (user + system, all threads), in seconds. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* What the ranks used, reduced to rank 0 (the only rank that prints it). */
typedef struct usage_all {
    uint64_t rss_max_kib; /* peak resident memory of the largest rank */
    double cpu_process;   /* CPU seconds of every rank's whole process, summed */
    double cpu_call;      /* CPU seconds of every rank's sts_consolidate call, summed */
} usage_all;

/* Collective.  call_cpu: this rank's CPU seconds inside sts_consolidate. */
static void reduce_usage(double call_cpu, usage_all *u)
{
    struct rusage ru;
    long kib = 0, all = 0;
    double mine[2] = {cpu_seconds(), call_cpu}, sum[2] = {0.0, 0.0};
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        kib = ru.ru_maxrss; /* KiB on Linux */
    MPI_Reduce(&kib, &all, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(mine, sum, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    u->rss_max_kib = (uint64_t)all;
    u->cpu_process = sum[0];
    u->cpu_call = sum[1];
}

static void summary(const args *a, const sts_consolidate_stats *st, int np, const usage_all *u)
{
    uint64_t rss = u->rss_max_kib * 1024;
    double gib = (double)st->bytes_total / (1024.0 * 1024.0 * 1024.0);
    double rate = st->seconds > 0 ? gib / st->seconds : 0.0;
    char b[32], r[32];
    if (a->json) {
        printf("{\"input_files\": %llu, \"output_files\": %llu, \"tensors\": %llu, "
               "\"bytes\": %llu, \"seconds\": %.6f, \"gib_per_s\": %.3f, \"ranks\": %d, "
               "\"max_rss_bytes\": %llu, \"peak_rss_kib_max\": %llu, \"cpu_seconds_sum\": %.3f, "
               "\"cpu_seconds_consolidate_sum\": %.3f, \"outdir\": ",
               (unsigned long long)st->input_files, (unsigned long long)st->output_files,
               (unsigned long long)st->tensors, (unsigned long long)st->bytes_total, st->seconds,
               rate, np, (unsigned long long)rss, (unsigned long long)u->rss_max_kib,
               u->cpu_process, u->cpu_call);
        cli_json_string(stdout, a->outdir);
        printf("}\n");
        return;
    }
    printf("consolidated %llu tensors from %llu rank files into %llu file%s: %s in %.2f s "
           "(%.2f GiB/s, %d rank%s, peak RSS %s per rank) -> %s\n",
           (unsigned long long)st->tensors, (unsigned long long)st->input_files,
           (unsigned long long)st->output_files, st->output_files == 1 ? "" : "s",
           cli_format_bytes(st->bytes_total, b, sizeof b), st->seconds, rate, np,
           np == 1 ? "" : "s", cli_format_bytes(rss, r, sizeof r), a->outdir);
}

int cmd_consolidate(int argc, char **argv)
{
    args a;
    int me = 0, np = 1, rc;
    sts_mapping *map = NULL;
    sts_consolidate_stats st;
    sts_diag d;
    cli_progress prog;
    usage_all use;
    double cpu0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    rc = parse(argc, argv, &a, me);
    if (rc != 0) {
        if (rc > 0 && me == 0)
            usage(stdout);
        return rc > 0 ? CLI_OK : CLI_USAGE;
    }
    rc = load_mapping(&a, me, &map);
    if (rc != STS_OK)
        return sts_exit_status(rc);
    a.o.mapping = map;
    if (me == 0 && cli_stderr_is_tty()) {
        cli_progress_start(&prog, "consolidate");
        a.o.progress = cli_progress_fn;
        a.o.progress_ud = &prog;
    }
    memset(&st, 0, sizeof st);
    cpu0 = cpu_seconds();
    rc = sts_consolidate(MPI_COMM_WORLD, a.indir, a.outdir, &a.o, &st, &d);
    cpu0 = cpu_seconds() - cpu0;
    if (a.o.progress)
        cli_progress_end(&prog);
    sts_mapping_free(map);
    reduce_usage(cpu0, &use);
    if (me == 0 && rc != STS_OK) {
        cli_error(CMD, rc, "%s", d.message);
        if (a.json) {
            printf("{\"error\": ");
            cli_json_string(stdout, sts_errname(rc));
            printf(", \"message\": ");
            cli_json_string(stdout, d.message);
            printf(", \"exit_status\": %d}\n", sts_exit_status(rc));
        }
    } else if (me == 0) {
        summary(&a, &st, np, &use);
    }
    return sts_exit_status(rc);
}
