/*
 * model.h - deterministic synthetic models for `stshard save` and the tests.
 *
 * A model is a list of global tensors with realistic transformer shapes
 * (a Llama-style decoder scaled to a target size).  A sharding strategy
 * turns it into each rank's local blocks.  Every element is a pure function
 * of (seed, tensor name, global linear index), so any program can recompute
 * any element of any block without storing the model: tests check saved
 * files against it, and a loader can check what it read.
 *
 * This module uses only include/stshard.h and libc, so test programs compile
 * it in directly.  No MPI.
 */
#ifndef STS_CLI_MODEL_H
#define STS_CLI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "stshard.h"

#define MODEL_MAX_DIMS 4
#define MODEL_NAME_MAX 96

/* How a tensor is laid out under Megatron-style tensor parallelism. */
typedef enum model_role {
    MODEL_ROLE_COLUMN,    /* column-parallel linear: weight [out, in] split along dim 0 */
    MODEL_ROLE_ROW,       /* row-parallel linear: weight [out, in] split along dim 1 */
    MODEL_ROLE_VOCAB,     /* vocab-parallel embedding: split along dim 0 */
    MODEL_ROLE_REPLICATED /* every rank holds the whole tensor (norms, scalars) */
} model_role;

/* Sharding strategies of `stshard save --strategy`. */
typedef enum model_strategy {
    MODEL_TP,    /* Megatron tensor parallelism (per-tensor role) */
    MODEL_ROWS,  /* every tensor split along dim 0 */
    MODEL_COLS,  /* dim 1 (dim 0 for 1-D tensors) */
    MODEL_MESH2D /* dims 0 and 1 over a near-square grid of ranks */
} model_strategy;

typedef struct model_tensor {
    char name[MODEL_NAME_MAX];
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t shape[MODEL_MAX_DIMS];
    model_role role;
    uint64_t key; /* hash of the name: the generator's per-tensor stream */
} model_tensor;

/* Shape parameters of a Llama-style model (for printing). */
typedef struct model_dims {
    uint64_t hidden, layers, intermediate, vocab, kv_dim;
} model_dims;

typedef struct model {
    model_tensor *tensors;
    size_t count;
    uint64_t total_bytes; /* sum of the global tensors' byte sizes */
    model_dims dims;
} model;

/*
 * Builds the model named by spec, "PRESET:SIZE" (SIZE as parsed by
 * cli_parse_size), with weights of dtype dt.  Presets:
 *   llama  embedding, per layer q/k/v/o, gate/up/down and two norms, final
 *          norm and lm_head; the widest hidden size (multiple of 64, depth
 *          hidden/128, FFN 8/3 hidden, grouped KV from 1024) that leaves a
 *          vocabulary of 32000+ rows (1000+ for tiny sizes); the vocabulary
 *          absorbs the remainder, so the total lands just under SIZE.
 *   mixed  llama plus buffers of other dtypes and ranks (F32 rotary table,
 *          I64 scalar step, BOOL 2-D mask, I32 3-D and F16 4-D tensors).
 * Returns 0, or -1 (bad spec) / -2 (out of memory) with a message in err.
 */
int model_build(const char *spec, sts_dtype dt, model *out, char *err, size_t errlen);
void model_free(model *m);

/* Parses "tp", "row", "col", "mesh2d"; 0 or -1. */
int model_strategy_parse(const char *s, model_strategy *out);
const char *model_strategy_name(model_strategy s);

/* The near-square grid of mesh2d: rows * cols == nranks, rows <= cols. */
void model_mesh_grid(int nranks, int *rows, int *cols);

/*
 * Rank's local block of tensor t under strategy s: offsets and shape (ndim
 * entries each).  Returns 1 when the rank holds a block, 0 when it holds
 * none (an empty part of an uneven split).  *replicated is set when the
 * block is the whole tensor held by every rank.  A dimension of length L
 * split into n parts gives part i the length L/n + (i < L%n).
 */
int model_local_block(const model_tensor *t, model_strategy s, int rank, int nranks,
                      uint64_t *offsets, uint64_t *shape, int *replicated);

/*
 * The tensor-parallel role of a tensor of any checkpoint, from its name (for
 * `stshard load` and `reshard --strategy tp`): the llama preset's layer
 * tensors get their preset roles (o_proj, down_proj split along dim 1), the
 * embedding is vocab-parallel, other tensors of two or more dimensions are
 * column-parallel (dim 0), and tensors of at most one dimension replicated.
 */
model_role model_role_of(const char *name, uint32_t ndim);

/* Byte size of a block shape of t's dtype (0 on overflow). */
uint64_t model_block_bytes(const model_tensor *t, const uint64_t *shape);

/* FNV-1a hash of a tensor name, the `key` of model_value. */
uint64_t model_name_key(const char *name);

/*
 * The element at global row-major index `index` of the tensor whose name
 * hashes to key, as its raw little-endian bits (the low bits(dt) bits are
 * significant).  Floating dtypes get finite values of magnitude 2^-9..2^-2
 * with a random sign, like trained weights; other dtypes get uniform bits.
 */
uint64_t model_value(uint64_t seed, uint64_t key, sts_dtype dt, uint64_t index);

/*
 * Fills dst with the block (offsets, shape) of a tensor of global shape
 * gshape: row-major, little-endian, model_value of each element.  dt must
 * have a whole number of bytes per element.
 */
void model_fill(uint64_t seed, uint64_t key, sts_dtype dt, uint32_t ndim, const uint64_t *gshape,
                const uint64_t *offsets, const uint64_t *shape, void *dst);

#endif /* STS_CLI_MODEL_H */
