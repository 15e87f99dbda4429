/*
 * shard.h - one rank's share of a synthetic model, in memory: the blocks a
 * sharding strategy gives the rank, filled with the generator's values and
 * described as sts_block entries ready for sts_writer_add.  Shared by
 * `stshard save` and `stshard bench`.
 */
#ifndef STS_CLI_SHARD_H
#define STS_CLI_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "stshard.h"

typedef struct shard {
    sts_block *blocks; /* count entries; pointers into data, dims and the model */
    void **data;
    uint64_t (*dims)[2 * MODEL_MAX_DIMS]; /* offsets, shape */
    size_t count;
    uint64_t bytes; /* sum of the blocks' byte sizes */
} shard;

/*
 * Local.  Allocates and fills rank me's blocks of m under strategy s (of np
 * ranks) with model_fill(seed, ...).  The blocks borrow m's names and shapes,
 * so m must outlive s.  Returns STS_OK or STS_E_NOMEM; on failure s holds
 * what was built so far, and shard_free releases it.
 */
int shard_build(const model *m, model_strategy strategy, uint64_t seed, int me, int np, shard *s);

/* Local.  Frees what shard_build allocated and zeroes s. */
void shard_free(shard *s);

#endif /* STS_CLI_SHARD_H */
