/*
 * bench_report.c - the samples of `stshard bench`: gathered per rank to rank
 * 0, printed as they are taken and summarised IOR-style (max, min, mean and
 * standard deviation of GiB/s over the iterations), and written as JSON with
 * every raw figure.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "share.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

const char *bench_op_name(bench_op op)
{
    static const char *const names[] = {"save",     "consolidate",  "load",       "fpp-write",
                                        "fpp-read", "shared-write", "shared-read"};
    return (unsigned)op < BENCH_NOPS ? names[op] : "?";
}

void bench_series_free(bench_series *s)
{
    free(s->seconds);
    free(s->bytes);
    free(s->lib_seconds);
    free(s->rank_seconds);
    free(s->rank_bytes);
    memset(s, 0, sizeof *s);
}

/* Grows every array of s to hold iteration n (rank 0); 0 or -1. */
static int series_grow(bench_series *s, uint64_t n, int np)
{
    void *p[5];
    size_t k = (size_t)n + 1;
    p[0] = realloc(s->seconds, k * sizeof *s->seconds);
    if (p[0])
        s->seconds = p[0];
    p[1] = realloc(s->bytes, k * sizeof *s->bytes);
    if (p[1])
        s->bytes = p[1];
    p[2] = realloc(s->lib_seconds, k * sizeof *s->lib_seconds);
    if (p[2])
        s->lib_seconds = p[2];
    p[3] = realloc(s->rank_seconds, k * (size_t)np * sizeof *s->rank_seconds);
    if (p[3])
        s->rank_seconds = p[3];
    p[4] = realloc(s->rank_bytes, k * (size_t)np * sizeof *s->rank_bytes);
    if (p[4])
        s->rank_bytes = p[4];
    return p[0] && p[1] && p[2] && p[3] && p[4] ? 0 : -1;
}

int bench_record(bench_run *r, bench_op op, const bench_sample *s)
{
    bench_series *se = &r->ops[op];
    double mine[3] = {s->seconds, (double)s->bytes, s->lib_seconds}, *all = NULL;
    int rc = STS_OK, all_rc = STS_OK;
    if (r->me == 0) {
        all = malloc(3 * (size_t)r->np * sizeof *all);
        if (!all || series_grow(se, se->n, r->np) != 0)
            rc = STS_E_NOMEM;
    }
    /* Byte counts travel as doubles: exact below 2^53 bytes (8 PiB) per rank. */
    MPI_Gather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, r->comm);
    if (r->me == 0 && rc == STS_OK) {
        uint64_t n = se->n, sum = 0;
        double max = 0, lib = 0;
        for (int i = 0; i < r->np; i++) {
            se->rank_seconds[n * (uint64_t)r->np + (uint64_t)i] = all[3 * i];
            se->rank_bytes[n * (uint64_t)r->np + (uint64_t)i] = (uint64_t)all[3 * i + 1];
            sum += (uint64_t)all[3 * i + 1];
            max = all[3 * i] > max ? all[3 * i] : max;
            lib = all[3 * i + 2] > lib ? all[3 * i + 2] : lib;
        }
        se->seconds[n] = max;
        se->bytes[n] = sum;
        se->lib_seconds[n] = lib;
        se->n++;
        r->ran[op] = 1;
    }
    free(all);
    MPI_Allreduce(&rc, &all_rc, 1, MPI_INT, MPI_MIN, r->comm);
    return all_rc;
}

/* Max over ranks divided by the mean over ranks: 1.00 is a perfect balance. */
static double imbalance_d(const double *v, int np)
{
    double max = 0, sum = 0;
    for (int i = 0; i < np; i++) {
        sum += v[i];
        max = v[i] > max ? v[i] : max;
    }
    return sum > 0 ? max / (sum / np) : 1.0;
}

static double imbalance_u(const uint64_t *v, int np)
{
    uint64_t max = 0, sum = 0;
    for (int i = 0; i < np; i++) {
        sum += v[i];
        max = v[i] > max ? v[i] : max;
    }
    return sum > 0 ? (double)max / ((double)sum / np) : 1.0;
}

static double gibs(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / s / GIB : 0.0;
}

/* The summary of one operation over its iterations. */
typedef struct op_stats {
    double max, min, mean, stddev, mean_s, imb_bytes, imb_time;
    uint64_t bytes;
} op_stats;

static void op_summary(const bench_series *s, int np, op_stats *o)
{
    double sum = 0, sq = 0;
    memset(o, 0, sizeof *o);
    if (s->n == 0)
        return;
    o->min = INFINITY;
    for (uint64_t i = 0; i < s->n; i++) {
        double g = gibs(s->bytes[i], s->seconds[i]);
        o->max = g > o->max ? g : o->max;
        o->min = g < o->min ? g : o->min;
        sum += g;
        o->mean_s += s->seconds[i] / (double)s->n;
        o->imb_bytes += imbalance_u(s->rank_bytes + i * (uint64_t)np, np) / (double)s->n;
        o->imb_time += imbalance_d(s->rank_seconds + i * (uint64_t)np, np) / (double)s->n;
    }
    o->mean = sum / (double)s->n;
    for (uint64_t i = 0; i < s->n; i++) {
        double g = gibs(s->bytes[i], s->seconds[i]) - o->mean;
        sq += g * g;
    }
    o->stddev = sqrt(sq / (double)s->n);
    o->bytes = s->bytes[s->n - 1];
}

/*
 * The machine's raw throughput a phase is compared with: writes against the
 * better raw write, loads against the better raw read, and consolidation,
 * which reads every byte and writes it again, against a raw copy at those
 * rates (1 / (1/read + 1/write)).  0 when the baselines did not run.
 */
typedef struct raw_ref {
    double write, read, copy;
} raw_ref;

static void raw_refs(const bench_run *r, raw_ref *ref)
{
    op_stats st;
    memset(ref, 0, sizeof *ref);
    for (int op = BENCH_FPP_WRITE; op < BENCH_NOPS; op++) {
        if (!r->ran[op])
            continue;
        op_summary(&r->ops[op], r->np, &st);
        if (op == BENCH_FPP_WRITE || op == BENCH_SHARED_WRITE)
            ref->write = st.mean > ref->write ? st.mean : ref->write;
        else
            ref->read = st.mean > ref->read ? st.mean : ref->read;
    }
    if (ref->write > 0 && ref->read > 0)
        ref->copy = 1.0 / (1.0 / ref->read + 1.0 / ref->write);
}

/* The reference of op, its name, and the phase's fraction of it (0 when none). */
static double fraction(bench_op op, double mean, const raw_ref *ref, const char **name)
{
    double base = 0;
    *name = NULL;
    if (op == BENCH_SAVE)
        base = ref->write, *name = "write";
    else if (op == BENCH_CONSOLIDATE)
        base = ref->copy, *name = "copy";
    else if (op == BENCH_LOAD)
        base = ref->read, *name = "read";
    return base > 0 ? mean / base : 0.0;
}

void bench_print_header(const bench_run *r)
{
    const bench_env *e = &r->env;
    const model_dims *d = &r->m.dims;
    char b[32];
    printf("stshard bench %s\n", sts_version_string());
    printf("Began               : %s\n", e->began);
    printf("Command line        : %s\n", r->a.cmdline);
    printf("Host                : %s\n", e->host);
    printf("Nodes               : %d (%s)\n", e->nnodes, e->nodes ? e->nodes : "?");
    printf("Ranks               : %d\n", e->nranks);
    printf("Load average        : %.2f %.2f %.2f (1, 5, 15 min, on %s at the start)\n",
           e->load_began[0], e->load_began[1], e->load_began[2], e->host);
    printf("MPI library         : %s\n", e->mpi_library);
    printf("MPI-IO component    : %s (%s)\n", e->io_component, e->io_selection);
    printf("STSHARD_MPI_HINTS   : %s\n", e->hints_env[0] ? e->hints_env : "(unset)");
    printf("Hints in effect     :");
    for (int i = 0; i < e->nhints; i++)
        printf("%s %s=%s", i ? "," : "", e->hint_key[i], e->hint_val[i]);
    printf("%s\n", e->nhints ? "" : " (none reported by MPI_File_get_info)");
    printf("Model               : %s, %s, %zu tensors, %llu bytes (%s; hidden %llu, %llu layers, "
           "vocab %llu)\n",
           r->a.model, sts_dtype_name(r->a.dtype), r->m.count, (unsigned long long)r->m.total_bytes,
           cli_format_bytes(r->m.total_bytes, b, sizeof b), (unsigned long long)d->hidden,
           (unsigned long long)d->layers, (unsigned long long)d->vocab);
    printf("Strategy            : %s\n", model_strategy_name(r->a.strategy));
    printf("Phases              :");
    for (int op = BENCH_SAVE; op <= BENCH_LOAD; op++)
        if (r->a.phases & (1u << op))
            printf(" %s", bench_op_name((bench_op)op));
    printf("\nIterations          : %llu\n", (unsigned long long)r->a.iterations);
    printf("fsync               : %s\n", r->a.fsync ? "yes" : "no");
    printf("Before each op      : sync%s\n", r->a.drop_caches ? ", drop caches" : "");
    printf("Baseline            : %s", r->a.baseline ? "fpp and shared-file MPI-IO" : "no");
    if (r->a.baseline)
        printf(", independent transfers of %s", cli_format_bytes(r->a.transfer, b, sizeof b));
    printf("\nDirectory           : %s\n\n", r->work);
    printf("%-13s %4s %10s %10s %10s %14s %8s %8s\n", "access", "iter", "GiB/s", "time(s)",
           "lib(s)", "bytes", "imbal(B)", "imbal(t)");
    fflush(stdout);
}

void bench_print_sample(const bench_run *r, bench_op op)
{
    const bench_series *s = &r->ops[op];
    uint64_t i = s->n - 1;
    printf("%-13s %4llu %10.3f %10.4f ", bench_op_name(op), (unsigned long long)s->n,
           gibs(s->bytes[i], s->seconds[i]), s->seconds[i]);
    if (s->lib_seconds[i] > 0)
        printf("%10.4f", s->lib_seconds[i]);
    else
        printf("%10s", "-");
    printf(" %14llu %8.2f %8.2f\n", (unsigned long long)s->bytes[i],
           imbalance_u(s->rank_bytes + i * (uint64_t)r->np, r->np),
           imbalance_d(s->rank_seconds + i * (uint64_t)r->np, r->np));
    fflush(stdout);
}

void bench_print_summary(const bench_run *r)
{
    raw_ref ref;
    raw_refs(r, &ref);
    printf("\nSummary of all tests:\n");
    printf("%-13s %10s %10s %11s %8s %10s %14s %5s %4s %8s %8s  %s\n", "Operation", "Max(GiB/s)",
           "Min(GiB/s)", "Mean(GiB/s)", "StdDev", "Mean(s)", "Bytes", "Ranks", "Iter", "Imbal(B)",
           "Imbal(t)", "vs raw");
    for (int op = 0; op < BENCH_NOPS; op++) {
        op_stats st;
        const char *name;
        double f;
        if (!r->ran[op])
            continue;
        op_summary(&r->ops[op], r->np, &st);
        f = fraction((bench_op)op, st.mean, &ref, &name);
        printf("%-13s %10.3f %10.3f %11.3f %8.3f %10.4f %14llu %5d %4llu %8.2f %8.2f  ",
               bench_op_name((bench_op)op), st.max, st.min, st.mean, st.stddev, st.mean_s,
               (unsigned long long)st.bytes, r->np, (unsigned long long)r->ops[op].n, st.imb_bytes,
               st.imb_time);
        if (f > 0)
            printf("%.2f of raw %s\n", f, name);
        else
            printf("-\n");
    }
    if (r->checked)
        printf("\nCheck               : %llu elements read back and compared, %llu differ\n",
               (unsigned long long)r->check_elements, (unsigned long long)r->check_mismatches);
    if (r->a.drop_caches)
        printf("%sDrop caches         : %llu done, %llu skipped%s%s\n", r->checked ? "" : "\n",
               (unsigned long long)r->env.drops_done, (unsigned long long)r->env.drops_skipped,
               r->env.drop_note[0] ? ": " : "", r->env.drop_note);
    printf("Load average        : %.2f %.2f %.2f (at the end)\n", r->env.load_finished[0],
           r->env.load_finished[1], r->env.load_finished[2]);
    printf("Finished            : %s\n", r->env.finished);
    fflush(stdout);
}

/* ---- JSON ---------------------------------------------------------------- */

static cJSON *json_u64s(const uint64_t *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static cJSON *json_doubles(const double *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *json_env(const bench_run *r)
{
    const bench_env *e = &r->env;
    cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "host", e->host);
    cJSON_AddNumberToObject(o, "nodes", e->nnodes);
    cJSON_AddStringToObject(o, "node_names", e->nodes ? e->nodes : "");
    cJSON_AddNumberToObject(o, "ranks", e->nranks);
    cJSON_AddItemToObject(o, "loadavg_began", json_doubles(e->load_began, 3));
    cJSON_AddItemToObject(o, "loadavg_finished", json_doubles(e->load_finished, 3));
    cJSON_AddStringToObject(o, "mpi_library", e->mpi_library);
    cJSON_AddStringToObject(o, "mpiio_component", e->io_component);
    cJSON_AddStringToObject(o, "mpiio_component_basis", e->io_selection);
    if (e->hints_env[0])
        cJSON_AddStringToObject(o, "stshard_mpi_hints", e->hints_env);
    else
        cJSON_AddNullToObject(o, "stshard_mpi_hints");
    for (int i = 0; i < e->nhints; i++)
        cJSON_AddStringToObject(h, e->hint_key[i], e->hint_val[i]);
    cJSON_AddItemToObject(o, "hints_in_effect", h);
    return o;
}

static cJSON *json_options(const bench_run *r)
{
    cJSON *o = cJSON_CreateObject(), *ph = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "model", r->a.model);
    cJSON_AddStringToObject(o, "dtype", sts_dtype_name(r->a.dtype));
    cJSON_AddStringToObject(o, "strategy", model_strategy_name(r->a.strategy));
    for (int op = BENCH_SAVE; op <= BENCH_LOAD; op++)
        if (r->a.phases & (1u << op))
            cJSON_AddItemToArray(ph, cJSON_CreateString(bench_op_name((bench_op)op)));
    cJSON_AddItemToObject(o, "phases", ph);
    cJSON_AddNumberToObject(o, "iterations", (double)r->a.iterations);
    cJSON_AddNumberToObject(o, "seed", (double)r->a.seed);
    cJSON_AddBoolToObject(o, "fsync", r->a.fsync);
    cJSON_AddBoolToObject(o, "drop_caches", r->a.drop_caches);
    cJSON_AddBoolToObject(o, "keep", r->a.keep);
    cJSON_AddBoolToObject(o, "baseline", r->a.baseline);
    cJSON_AddBoolToObject(o, "check", r->a.check);
    cJSON_AddNumberToObject(o, "transfer_size", (double)r->a.transfer);
    cJSON_AddNumberToObject(o, "load_batch", (double)r->a.batch);
    cJSON_AddStringToObject(o, "dir", r->a.dir);
    cJSON_AddStringToObject(o, "work_dir", r->work);
    return o;
}

static cJSON *json_model(const bench_run *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors", (double)r->m.count);
    cJSON_AddNumberToObject(o, "bytes", (double)r->m.total_bytes);
    cJSON_AddNumberToObject(o, "hidden", (double)r->m.dims.hidden);
    cJSON_AddNumberToObject(o, "layers", (double)r->m.dims.layers);
    cJSON_AddNumberToObject(o, "intermediate", (double)r->m.dims.intermediate);
    cJSON_AddNumberToObject(o, "vocab", (double)r->m.dims.vocab);
    return o;
}

static cJSON *json_op(const bench_run *r, bench_op op, const raw_ref *ref)
{
    const bench_series *s = &r->ops[op];
    cJSON *o = cJSON_CreateObject(), *its = cJSON_CreateArray(), *sum = cJSON_CreateObject();
    op_stats st;
    const char *name;
    double f;
    op_summary(s, r->np, &st);
    cJSON_AddStringToObject(o, "operation", bench_op_name(op));
    for (uint64_t i = 0; i < s->n; i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "iteration", (double)(i + 1));
        cJSON_AddNumberToObject(it, "seconds", s->seconds[i]);
        cJSON_AddNumberToObject(it, "bytes", (double)s->bytes[i]);
        cJSON_AddNumberToObject(it, "gib_per_s", gibs(s->bytes[i], s->seconds[i]));
        if (s->lib_seconds[i] > 0)
            cJSON_AddNumberToObject(it, "library_seconds", s->lib_seconds[i]);
        cJSON_AddItemToObject(it, "rank_seconds",
                              json_doubles(s->rank_seconds + i * (uint64_t)r->np, (size_t)r->np));
        cJSON_AddItemToObject(it, "rank_bytes",
                              json_u64s(s->rank_bytes + i * (uint64_t)r->np, (size_t)r->np));
        cJSON_AddItemToArray(its, it);
    }
    cJSON_AddItemToObject(o, "iterations", its);
    cJSON_AddNumberToObject(sum, "max_gib_per_s", st.max);
    cJSON_AddNumberToObject(sum, "min_gib_per_s", st.min);
    cJSON_AddNumberToObject(sum, "mean_gib_per_s", st.mean);
    cJSON_AddNumberToObject(sum, "stddev_gib_per_s", st.stddev);
    cJSON_AddNumberToObject(sum, "mean_seconds", st.mean_s);
    cJSON_AddNumberToObject(sum, "bytes", (double)st.bytes);
    cJSON_AddNumberToObject(sum, "imbalance_bytes", st.imb_bytes);
    cJSON_AddNumberToObject(sum, "imbalance_time", st.imb_time);
    f = fraction(op, st.mean, ref, &name);
    if (name && f > 0) {
        cJSON_AddNumberToObject(sum, "fraction_of_raw", f);
        cJSON_AddStringToObject(sum, "raw_reference", name);
    }
    cJSON_AddItemToObject(o, "summary", sum);
    return o;
}

static cJSON *json_report(const bench_run *r)
{
    cJSON *root = cJSON_CreateObject(), *ops = cJSON_CreateArray(), *raw, *drop, *chk;
    raw_ref ref;
    raw_refs(r, &ref);
    cJSON_AddStringToObject(root, "tool", "stshard bench");
    cJSON_AddStringToObject(root, "version", sts_version_string());
    cJSON_AddStringToObject(root, "command_line", r->a.cmdline);
    cJSON_AddStringToObject(root, "began", r->env.began);
    cJSON_AddStringToObject(root, "finished", r->env.finished);
    cJSON_AddItemToObject(root, "environment", json_env(r));
    cJSON_AddItemToObject(root, "options", json_options(r));
    cJSON_AddItemToObject(root, "model", json_model(r));
    for (int op = 0; op < BENCH_NOPS; op++)
        if (r->ran[op])
            cJSON_AddItemToArray(ops, json_op(r, (bench_op)op, &ref));
    cJSON_AddItemToObject(root, "operations", ops);
    raw = cJSON_AddObjectToObject(root, "raw_gib_per_s");
    cJSON_AddNumberToObject(raw, "write", ref.write);
    cJSON_AddNumberToObject(raw, "read", ref.read);
    cJSON_AddNumberToObject(raw, "copy", ref.copy);
    drop = cJSON_AddObjectToObject(root, "drop_caches");
    cJSON_AddBoolToObject(drop, "requested", r->a.drop_caches);
    cJSON_AddNumberToObject(drop, "done", (double)r->env.drops_done);
    cJSON_AddNumberToObject(drop, "skipped", (double)r->env.drops_skipped);
    if (r->env.drop_note[0])
        cJSON_AddStringToObject(drop, "skipped_reason", r->env.drop_note);
    else
        cJSON_AddNullToObject(drop, "skipped_reason");
    if (r->checked) {
        chk = cJSON_AddObjectToObject(root, "check");
        cJSON_AddNumberToObject(chk, "elements", (double)r->check_elements);
        cJSON_AddNumberToObject(chk, "mismatches", (double)r->check_mismatches);
    }
    return root;
}

int bench_json_open(bench_run *r, char *err, size_t errlen)
{
    int rc = STS_OK;
    if (r->me == 0 && r->a.json) {
        r->json = strcmp(r->a.json, "-") == 0 ? stdout : fopen(r->a.json, "w");
        if (!r->json) {
            snprintf(err, errlen, "%s: cannot write the JSON report: %s", r->a.json,
                     strerror(errno));
            rc = errno == ENOENT ? STS_E_NOENT : errno == EACCES ? STS_E_ACCESS : STS_E_IO;
        }
    }
    return share_agree(r->comm, rc, err, errlen);
}

void bench_json_close(bench_run *r, int ok)
{
    if (!r->json)
        return;
    if (r->json != stdout) {
        fclose(r->json);
        if (!ok) /* a run that failed leaves no half-empty report behind */
            remove(r->a.json);
    }
    r->json = NULL;
}

int bench_write_json(bench_run *r, char *err, size_t errlen)
{
    cJSON *root = json_report(r);
    char *text = root ? cJSON_Print(root) : NULL;
    int rc = STS_OK;
    if (!text) {
        snprintf(err, errlen, "out of memory while building the JSON report");
        rc = STS_E_NOMEM;
    } else if (fputs(text, r->json) == EOF || fputc('\n', r->json) == EOF || fflush(r->json) != 0) {
        snprintf(err, errlen, "%s: cannot write the JSON report: %s", r->a.json, strerror(errno));
        rc = STS_E_IO;
    }
    free(text);
    cJSON_Delete(root);
    return rc;
}
