/*
 * shard.c - a rank's share of a synthetic model, built in memory.
 */
#include <stdlib.h>
#include <string.h>

#include "shard.h"

void shard_free(shard *s)
{
    for (size_t i = 0; s->data && i < s->count; i++)
        free(s->data[i]);
    free(s->blocks);
    free(s->data);
    free(s->dims);
    memset(s, 0, sizeof *s);
}

int shard_build(const model *m, model_strategy strategy, uint64_t seed, int me, int np, shard *s)
{
    memset(s, 0, sizeof *s);
    s->blocks = calloc(m->count ? m->count : 1, sizeof *s->blocks);
    s->data = calloc(m->count ? m->count : 1, sizeof *s->data);
    s->dims = calloc(m->count ? m->count : 1, sizeof *s->dims);
    if (!s->blocks || !s->data || !s->dims)
        return STS_E_NOMEM;
    for (size_t t = 0; t < m->count; t++) {
        const model_tensor *mt = &m->tensors[t];
        uint64_t *off = s->dims[s->count], *shape = off + MODEL_MAX_DIMS, bytes;
        int repl;
        sts_block *b = &s->blocks[s->count];
        if (!model_local_block(mt, strategy, me, np, off, shape, &repl))
            continue;
        bytes = model_block_bytes(mt, shape);
        s->data[s->count] = malloc(bytes ? bytes : 1);
        if (!s->data[s->count])
            return STS_E_NOMEM;
        model_fill(seed, mt->key, mt->dtype, mt->ndim, mt->shape, off, shape, s->data[s->count]);
        b->name = mt->name;
        b->dtype = mt->dtype;
        b->ndim = mt->ndim;
        b->global_shape = mt->shape;
        b->offsets = off;
        b->shape = shape;
        b->data = s->data[s->count];
        s->bytes += bytes;
        s->count++;
    }
    return STS_OK;
}
