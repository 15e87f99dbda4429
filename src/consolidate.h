/*
 * consolidate.h - internals shared by the consolidation modules:
 * consolidate.c (collective phases), consolidate_data.c (one rank's data
 * copy) and consolidate_index.c (model.safetensors.index.json).
 */
#ifndef STS_CONSOLIDATE_H
#define STS_CONSOLIDATE_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error                                                                                             \
    "consolidate.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "exchange.h"
#include "plan.h"

/*
 * Default and smallest --buffer-size (bytes per rank for data).  Half of it
 * is the largest transfer.  The default keeps the window and the staging
 * area in a core's L2 cache: on page-cache file systems a copy then costs
 * what `cat` costs, while windows of tens of MiB measured 1.5-3x slower
 * (docs/benchmarks.md).  Parallel file systems want larger transfers: raise
 * it there (e.g. 64 MiB for 16 MiB Lustre stripes).
 */
#define STS_CONS_DEFAULT_BUFFER ((size_t)4 << 20)
#define STS_CONS_MIN_BUFFER     ((size_t)64)

/* What one rank's data phase needs; everything is borrowed. */
typedef struct sts_cons_data {
    const sts_plan *plan;
    char *const *in_paths;  /* input files, by plan file index */
    char *const *tmp_paths; /* output files under their temporary names */
    int rank, nranks;
    size_t buffer_size;
    int fsync;
    int copy_range;           /* copy_file_range allowed: rank 0's STSHARD_COPY_RANGE */
    sts_progress_fn progress; /* rank 0 only */
    void *progress_ud;
} sts_cons_data;

/*
 * Local (no communication).  Copies this rank's share of the stream: reads
 * every block run once and writes its range of the output files, which
 * exist already.  *bytes_local receives the data bytes written.
 */
int sts__consolidate_data_copy(const sts_cons_data *a, uint64_t *bytes_local, sts_diag *diag);

/*
 * Local.  0 when STSHARD_COPY_RANGE=0 (no copy_file_range), else 1.  Rank 0
 * reads it and sends it with the setup: the copy path is local and gives the
 * same bytes either way, but one run should take the path its launcher's
 * environment asked for on every host, not only where mpirun passed it.
 */
int sts__consolidate_data_range_env(void);

/*
 * Local.  Writes dir/model.safetensors.index.json through a temporary name
 * and a rename: {"metadata": {"total_size": N}, "weight_map": {...}}.  The
 * canonical layout has Python's json.dumps(indent=2, sort_keys=True) bytes
 * and a final newline; the pytorch layout PyTorch's json.dump(indent=2)
 * bytes (weight_map in the order it fills it, no final newline).
 */
int sts__consolidate_index_write(const sts_plan *p, const char *dir, int fsync, sts_diag *diag);

#endif /* STS_CONSOLIDATE_H */
