/*
 * meta.h - the distributed metadata plane of a consolidation (meta.c).
 *
 * No rank holds every block record.  Each tensor has an owner rank (a hash
 * of its name); the owner alone receives, checks and keeps the tensor's
 * blocks.  What every rank holds is one summary per tensor (name, dtype,
 * global shape) and the plan laid out from them (output files, headers,
 * offsets), plus the blocks of the few tensors its own share of the output
 * touches, fetched from their owners.
 */
#ifndef STS_META_H
#define STS_META_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error "meta.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "consolidate.h"

/*
 * Local.  Appends the record of one block: the entry `ordinal` of input file
 * `file`'s header, whose data starts at byte data_off of that file.
 * declared (ndim entries, or NULL) is the global shape the block's writer
 * declared (sts_plan_block.declared).  STS_E_NOMEM.
 */
int sts__meta_put_block(sts_bytes *k, uint32_t file, uint32_t ordinal, uint64_t data_off,
                        const char *name, size_t name_len, sts_dtype dtype, uint32_t ndim,
                        const uint64_t *offsets, const uint64_t *shape, const uint64_t *declared);

/* Local.  The owner rank of a tensor, of np ranks. */
int sts__meta_owner(const char *name, size_t len, int np);
/* Local.  Bytes of a block record and of a tensor summary (for memory models: bench_plan). */
size_t sts__meta_record_bytes(uint32_t ndim, size_t name_len);
size_t sts__meta_summary_bytes(uint32_t ndim, size_t name_len);

typedef struct sts_meta {
    sts_plan *plan; /* every tensor; blocks for this rank's share only */
    /* storage the plan borrows */
    unsigned char *summaries; /* every tensor's summary, gathered */
    unsigned char *fetched;   /* the blocks sent by their owners */
    sts_plan_block *blocks;
    uint64_t blocks_owned;   /* block records this rank checked as an owner */
    uint64_t blocks_fetched; /* block records this rank received for its share */
} sts_meta;

/*
 * What a direct save (writer_direct.c) changes.  Its block data lies in the
 * memory of the ranks that hold the blocks, not in input files, so a rank
 * needs the verdict on its own blocks and the blocks of the tensors the
 * ranks assemble together, not those of a share of the output stream.
 */
typedef struct sts_meta_save {
    /* Owner side, once per tensor after the checks (may be NULL): the flags
     * its summary carries to every rank (sts_plan_tensor.flags).  Its kept
     * blocks are blocks[order[s->first_block .. s->first_block + s->nblocks)]. */
    uint32_t (*flags)(const void *ctx, const sts_plan_summary *s, const sts_plan_block *blocks,
                      const size_t *order);
    const void *ctx;
    /* Fetch the blocks of every tensor whose flags meet this mask (0: none). */
    uint32_t fetch;
    /* Out, on success (free): per record of recs, in recs order, 1 if the
     * planner kept the block (not an identical duplicate, not empty). */
    unsigned char *kept;
    size_t nrecs;
} sts_meta_save;

/*
 * Collective over comm, agreed: every rank returns the same code.
 * recs holds this rank's block records (sts__meta_put_block) of the input
 * files it read, in file order and header order within a file; it is
 * consumed (freed).  opts->file_names must name all input files on every
 * rank.  On success m->plan has every tensor, file and header, the same on
 * every rank, and the blocks of every tensor that intersects this rank's
 * range of the output stream (sts__plan_chunk_rank_range).  The first error in
 * input order (the one sts__plan_build would report) wins.  With save (NULL
 * for a consolidation) the fetched blocks are those save->fetch selects
 * instead, and save->kept is filled.  Errors: those of sts__plan_build,
 * STS_E_MPI, STS_E_INTERNAL (a corrupt record).
 */
int sts__meta_plan(MPI_Comm comm, sts_bytes *recs, const sts_plan_opts *opts, sts_meta_save *save,
                   sts_meta *m, sts_diag *diag);

/* Local.  NULL-safe on a zeroed struct. */
void sts__meta_free(sts_meta *m);

#endif /* STS_META_H */
