/*
 * bench.h - the pieces of `stshard bench`, an IOR-style throughput harness.
 *
 * cmd_bench.c parses the options and runs the iterations; bench_phase.c times
 * the product's phases (save, consolidate, load) through the library API;
 * bench_raw.c times the raw MPI-IO baselines; bench_env.c gathers what the
 * report must say about the run (host, nodes, date, MPI-IO component, hints,
 * cache drops); bench_report.c turns the samples into the summary table and
 * the JSON file.
 *
 * Timing rule, the same for every operation: all ranks leave an MPI_Barrier,
 * each rank reads MPI_Wtime, runs its part (opens, transfers, closes, and for
 * library calls the closing agreement), and reads MPI_Wtime again.  The
 * operation's time is the maximum over ranks of that interval, as IOR takes
 * the last close minus the first open.
 */
#ifndef STS_CLI_BENCH_H
#define STS_CLI_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "loadpass.h"
#include "model.h"
#include "shard.h"

/* Every operation the bench can time, in report order. */
typedef enum bench_op {
    BENCH_SAVE,
    BENCH_CONSOLIDATE,
    BENCH_LOAD,
    BENCH_FPP_WRITE,
    BENCH_FPP_READ,
    BENCH_SHARED_WRITE,
    BENCH_SHARED_READ,
    BENCH_NOPS
} bench_op;

/* "save", "consolidate", "load", "fpp-write", ... */
const char *bench_op_name(bench_op op);

#define BENCH_MAX_ITERATIONS 1000

typedef struct bench_args {
    const char *model, *dir, *json;
    char *cmdline; /* "stshard bench ...", owned */
    model_strategy strategy;
    sts_dtype dtype;
    uint64_t iterations, seed, transfer, batch;
    unsigned phases; /* bit 1 << op for BENCH_SAVE, BENCH_CONSOLIDATE, BENCH_LOAD */
    int fsync, drop_caches, keep, baseline, check;
} bench_args;

/* What one rank measured in one run of one operation. */
typedef struct bench_sample {
    double seconds;     /* this rank's interval (see the timing rule above) */
    uint64_t bytes;     /* data bytes this rank moved */
    double lib_seconds; /* the library's own figure (save commit, consolidate), else 0 */
} bench_sample;

/* Every run of one operation, kept on rank 0. */
typedef struct bench_series {
    uint64_t n;           /* iterations recorded */
    double *seconds;      /* [n]: max over ranks */
    uint64_t *bytes;      /* [n]: sum over ranks */
    double *lib_seconds;  /* [n] */
    double *rank_seconds; /* [n * nranks] */
    uint64_t *rank_bytes; /* [n * nranks] */
} bench_series;

/* The run's context: where, on what, with which MPI-IO settings. */
#define BENCH_MAX_HINTS 64
typedef struct bench_env {
    int nranks, nnodes;
    char host[256];
    char *nodes; /* the node names, comma-separated (rank 0) */
    char began[32], finished[32];
    double load_began[3], load_finished[3]; /* rank 0's node: /proc/loadavg, -1 if unknown */
    char mpi_library[256];
    char io_component[64];  /* ompio, romio321, or "unknown" */
    char io_selection[256]; /* why: the io MCA variable, or the priorities */
    char hints_env[1024];   /* STSHARD_MPI_HINTS as given ("" when unset) */
    int nhints;             /* hints MPI_File_get_info returned on a probe file */
    char hint_key[BENCH_MAX_HINTS][MPI_MAX_INFO_KEY + 1];
    char hint_val[BENCH_MAX_HINTS][256];
    uint64_t drops_done, drops_skipped;
    char drop_note[256]; /* why drops were skipped */
} bench_env;

/* The whole state of a run: options, model, samples, context. */
typedef struct bench_run {
    bench_args a;
    MPI_Comm comm;
    int me, np;
    model m;
    shard s;
    char *work;                 /* the private directory under --dir (mkdtemp) */
    char *ranks_dir, *cons_dir; /* inside work */
    bench_series ops[BENCH_NOPS];
    int ran[BENCH_NOPS]; /* timed in this run */
    load_bufs lb;        /* the load's buffers, made once, outside the clock */
    int lb_ready;
    uint64_t load_tensors; /* tensors the load phase found */
    uint64_t check_elements, check_mismatches;
    int checked;
    bench_env env;
    FILE *json; /* rank 0: the open --json file */
} bench_run;

/* ---- bench_phase.c ---- */

/*
 * Collective.  One timed run of a product phase into *out (this rank's
 * figures).  Returns an agreed STS_* code; err holds the failure's detail.
 * The phases read and write r->ranks_dir and r->cons_dir.
 */
int bench_save(bench_run *r, bench_sample *out, char *err, size_t errlen);
int bench_consolidate(bench_run *r, bench_sample *out, char *err, size_t errlen);
int bench_load(bench_run *r, bench_sample *out, char *err, size_t errlen);
/*
 * Collective.  Reads back the load phase's source, untimed, and compares
 * every element with the generator; fills r->check_*.  Agreed code.
 */
int bench_check(bench_run *r, char *err, size_t errlen);
/* Local.  Removes dir and everything below it (no symlinks followed). */
void bench_rmtree(const char *dir);

/* ---- bench_raw.c ---- */

/*
 * Collective.  One timed raw MPI-IO baseline (BENCH_FPP_* or BENCH_SHARED_*)
 * moving the model's byte count, split evenly over the ranks, in
 * --transfer-size pieces with independent I/O.  A read reads the file(s)
 * of the matching write.  Agreed code.
 */
int bench_raw(bench_run *r, bench_op op, bench_sample *out, char *err, size_t errlen);
/* Collective.  Removes the baseline files (untimed). */
void bench_raw_cleanup(bench_run *r);

/* ---- bench_env.c ---- */

/*
 * Collective.  Fills r->env: ranks, nodes, host, date, MPI library, MPI-IO
 * component and the hints in effect, from a probe file opened in r->work
 * with the library's hints.  Agreed code (the probe checks that the
 * directory is writable by every rank).
 */
int bench_env_init(bench_run *r, char *err, size_t errlen);
void bench_env_free(bench_env *e);
/* Local.  The current UTC time as ISO 8601 into buf[32]. */
void bench_env_now(char *buf);
/* Local.  The 1, 5 and 15 minute load averages (-1 each when unknown). */
void bench_env_loadavg(double *out);
/*
 * Collective.  Before every timed operation, once per node: sync(), so no
 * operation pays for writing back the dirty pages of the one before; with
 * --drop-caches also drop the page cache when permitted (root), counting
 * drops done and skipped in r->env.
 */
void bench_settle(bench_run *r);

/* ---- bench_report.c ---- */

/* Collective.  Gathers every rank's sample of op to rank 0 and appends it. */
int bench_record(bench_run *r, bench_op op, const bench_sample *s);
/* Local (rank 0).  One line per sample as it is taken. */
void bench_print_sample(const bench_run *r, bench_op op);
/* Local (rank 0).  The header before the first sample. */
void bench_print_header(const bench_run *r);
/* Local (rank 0).  The IOR-like summary table. */
void bench_print_summary(const bench_run *r);
/*
 * Collective.  Rank 0 opens the --json file before anything is timed, so a
 * bad path fails at once rather than after the run.  Agreed code.
 */
int bench_json_open(bench_run *r, char *err, size_t errlen);
/* Local (rank 0).  Writes the JSON report into the open file; STS_OK or an error with err. */
int bench_write_json(bench_run *r, char *err, size_t errlen);
/* Local (rank 0).  Closes the file; removes it when the run failed (ok == 0). */
void bench_json_close(bench_run *r, int ok);
void bench_series_free(bench_series *s);

#endif /* STS_CLI_BENCH_H */
