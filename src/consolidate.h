/*
 * consolidate.h - internals shared by the consolidation modules:
 * consolidate.c (collective phases), consolidate_data.c (one rank's data
 * copy) and consolidate_index.c (model.safetensors.index.json).
 */
#ifndef STS_CONSOLIDATE_H
#define STS_CONSOLIDATE_H

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
    sts_progress_fn progress; /* rank 0 only */
    void *progress_ud;
} sts_cons_data;

/*
 * Local (no communication).  Copies this rank's share of the stream: reads
 * every block run once and writes its range of the output files, which
 * exist already.  *bytes_local receives the data bytes written.
 */
int sts__cons_copy(const sts_cons_data *a, uint64_t *bytes_local, sts_diag *diag);

/*
 * Local.  Writes dir/model.safetensors.index.json through a temporary name
 * and a rename: {"metadata": {"total_size": N}, "weight_map": {...}} with
 * Python's json.dumps(indent=2, sort_keys=True) bytes and a final newline.
 */
int sts__cons_write_index(const sts_plan *p, const char *dir, int fsync, sts_diag *diag);

#endif /* STS_CONSOLIDATE_H */
