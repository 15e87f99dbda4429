/*
 * share.h - a rank's share of an open checkpoint under a sharding strategy
 * (the blocks `stshard load` and `stshard reshard` read), and the cutting of
 * blocks into bounded chunks.
 *
 * The block of a rank is computed by model.c's model_local_block, the helper
 * `stshard save` uses, so a checkpoint saved with a strategy and resharded
 * with the same strategy and rank count has the same blocks.
 */
#ifndef STS_CLI_SHARE_H
#define STS_CLI_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "stshard.h"

typedef struct share_opts {
    model_strategy strategy;
    int dim; /* row strategy: split dimension (tensors with fewer dims split dim 0); -1 = 0 */
} share_opts;

/* One block of this rank's share. */
typedef struct share_block {
    size_t tensor; /* index in the reader */
    const sts_global_tensor *t;
    uint64_t off[MODEL_MAX_DIMS];
    uint64_t shape[MODEL_MAX_DIMS];
    uint64_t bytes;
    int replicated; /* every rank holds the whole tensor */
} share_block;

/*
 * Local.  This rank's blocks, in the reader's tensor order (ranks that hold
 * no part of a tensor get no block for it).  Returns 0, or -1 with a message
 * in err (a tensor of more than MODEL_MAX_DIMS dimensions, out of memory).
 * *out is malloc'd.
 */
int share_of(const sts_reader *r, const share_opts *o, int rank, int nranks, share_block **out,
             size_t *n, char *err, size_t errlen);

/*
 * Cuts a block into chunks of at most max_bytes (a chunk is at least one
 * row of the chosen level, or one element run for sub-byte dtypes, so it
 * may exceed max_bytes when a single run does).  With outer_only, chunks
 * are ranges of dimension 0 only: each is a contiguous piece of the block's
 * own buffer, at *buf_off.
 */
typedef struct share_chunker {
    const share_block *b;
    uint32_t level;
    uint64_t g;        /* rows of `level` per chunk */
    uint64_t rowbytes; /* bytes of one row of `level` */
    uint64_t idx[MODEL_MAX_DIMS];
    uint64_t r;
    int done;
} share_chunker;

void share_chunker_init(share_chunker *c, const share_block *b, uint64_t max_bytes, int outer_only);
/* Next chunk: 1 and its box, byte size and offset in the block buffer; 0 when finished. */
int share_chunker_next(share_chunker *c, uint64_t *off, uint64_t *shape, uint64_t *bytes,
                       uint64_t *buf_off);

/* One chunk of a block. */
typedef struct share_chunk {
    const share_block *b;
    uint64_t off[MODEL_MAX_DIMS], shape[MODEL_MAX_DIMS];
    uint64_t bytes;
    uint64_t buf_off; /* offset in the block's buffer (outer_only), else UINT64_MAX */
} share_chunk;

/* Walks all chunks of a list of blocks in rounds of bounded size. */
typedef struct share_walk {
    const share_block *blocks;
    size_t n, i;
    uint64_t batch;
    int outer_only, started, has_pending;
    share_chunker ch;
    share_chunk pending;
} share_walk;

void share_walk_init(share_walk *w, const share_block *blocks, size_t n, uint64_t batch,
                     int outer_only);
/*
 * The next round: up to cap chunks totalling at most batch bytes (or one
 * larger chunk); *bytes receives the total.  Returns the count, 0 at the end.
 */
size_t share_walk_round(share_walk *w, share_chunk *out, size_t cap, uint64_t *bytes);
/* Whether chunks remain. */
int share_walk_more(const share_walk *w);

/*
 * Collective over comm.  The agreement after a phase of local reads: every
 * rank gets the most severe code (the lowest) and, in msg, the message of
 * the lowest rank that has it, prefixed with that rank.
 */
int share_agree(MPI_Comm comm, int rc, char *msg, size_t len);

/*
 * Collective over comm.  The start of a lock-step read round (load and
 * reshard: sts_reader_read is collective, so every rank makes the same
 * number of calls).  1 when some rank still has chunks and no rank has
 * failed, else 0, the same on every rank: one MPI_Allreduce.
 */
int share_round_go(MPI_Comm comm, int more, int failed);

/* Parses --dim; 0 or -1. */
int share_parse_dim(const char *s, int *dim);

#endif /* STS_CLI_SHARE_H */
