/*
 * publish.h - the one way a Hugging Face checkpoint is published, shared by
 * consolidate.c and the direct save (writer_direct.c).
 *
 * Crash safety: every output file is written under its temporary name
 * (sts__path_tmp: hidden, not ending in ".safetensors"); the files are renamed
 * to their final names only once every rank has written its part, and the
 * index is written last, so a reader never sees a partial checkpoint under
 * final names.  With force an earlier checkpoint under the same names is
 * moved aside first and put back if publishing fails; on any failure the
 * temporaries are removed.  Rank 0 of the communicator alone touches names
 * in the output directory; every other rank only needs the temporary names
 * to write data into.
 */
#ifndef STS_PUBLISH_H
#define STS_PUBLISH_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error "publish.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "internal.h"
#include "plan.h"

/*
 * The caller zeroes the struct and fills the first group of fields; the
 * rest belongs to publish.c.
 */
typedef struct sts__publish {
    const sts_plan *plan; /* borrowed: output file names, headers, the index's content */
    const char *dir;      /* borrowed: the output directory */
    int fsync, force;
    MPI_Comm comm; /* borrowed; its rank 0 prepares, publishes and cleans up */
    int rank;      /* this rank in comm */
    /* NULL: the plan holds the headers; else they are encoded with these
     * options, one at a time as rank 0 writes them (sts__plan_layout_header) */
    const sts_plan_opts *encode;

    char **final_paths, **tmp_paths; /* by plan file index, on every rank */
    int created; /* rank 0: temporaries may exist, removed by sts__publish_free */
} sts__publish;

/*
 * Collective over o->comm, agreed.  Every rank names the outputs (final and
 * temporary paths).  Rank 0 creates the directory (mkdir -p), refuses final
 * names or an index already there unless force (STS_E_EXIST), checks the
 * free space for every output byte (STS_E_NOSPACE) and, with
 * write_headers, creates every output fresh under its temporary name with
 * its plan header (synced with fsync).  Callers that create the temporaries
 * themselves (the direct save's collective opens) pass write_headers = 0.
 */
int sts__publish_open(sts__publish *o, int write_headers, sts_diag *diag);

/*
 * Collective over o->comm, agreed; called once every rank's data is in the
 * temporaries.  Rank 0 moves an earlier checkpoint's files under the final
 * names aside (force), renames every temporary to its final name, writes
 * model.safetensors.index.json (through its own temporary), syncs the
 * directory and (force) removes model files of an earlier run that the new
 * index does not name.  On failure what was renamed is removed again and the
 * earlier checkpoint is put back, so no partial set is left.
 */
int sts__publish_commit(sts__publish *o, sts_diag *diag);

/*
 * Local.  Rank 0 removes the temporaries of a checkpoint that was not
 * published; every rank frees the names.  NULL-safe in every field.
 */
void sts__publish_free(sts__publish *o);

#endif /* STS_PUBLISH_H */
