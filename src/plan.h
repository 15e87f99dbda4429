/*
 * plan.h - the consolidation planner: pure arithmetic, no MPI, no I/O.
 *
 * Every rank of a consolidation builds the same plan from the same block
 * records (one record per tensor entry of every input rank file):
 *
 *  1. sts__plan_build() groups blocks by tensor name, checks that the blocks
 *     of a tensor agree on dtype and rank, derives the global shape (per
 *     dimension the maximum of offset + size), drops identical duplicate
 *     blocks and checks that the rest tile the global box exactly (no gap,
 *     no overlap).  It assigns every tensor to an output file (a mapping, a
 *     size limit filled in canonical order, or one file), encodes each
 *     output header and fixes every tensor's output offset.
 *
 *  2. The output data sections, concatenated in file order, form one
 *     "stream" of total_bytes bytes.  Rank r of P owns the byte range
 *     [total*r/P, total*(r+1)/P), rounded per tensor to whole rows (below).
 *     sts__plan_iter_*() walks a rank's range as chunks: contiguous runs of
 *     one output tensor no larger than a byte budget.
 *
 *  3. sts__plan_chunk_pieces() lists, for one chunk, the input runs that fill it:
 *     every block intersecting the chunk contributes exactly one contiguous
 *     run of its input file.  sts__plan_chunk_scatter() places a run read into
 *     memory at its positions in the chunk buffer.
 *
 * Geometry: a tensor is handled in a "byte view" in which the last
 * dimension counts bytes instead of elements (a scalar is a vector of its
 * element's bytes).  Every dtype then has 1-byte elements, and sub-byte
 * dtypes (F4, F6_*) work when each block starts and ends on a byte.  Rows:
 * the split dimension d of a tensor is the first dimension whose inner
 * volume (product of the dimensions after d, in bytes) fits the budget; a
 * row is one index of dimensions 0..d, a chunk is a run of rows that share
 * their indices in dimensions 0..d-1.  A chunk is therefore contiguous in
 * the output, and its intersection with any block is contiguous in the
 * block's input run.
 */
#ifndef STS_PLAN_H
#define STS_PLAN_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_PLAN
#error "plan.h belongs to the plan layer (src/layer.h); a lower layer may not include it"
#endif

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Tensors with more dimensions than this are rejected (STS_E_UNSUPPORTED). */
#define STS_PLAN_MAX_NDIM 64

/* One block: a tensor entry of one input file.  Pointers are borrowed by the plan. */
typedef struct sts_plan_block {
    const char *name; /* NUL-terminated UTF-8 */
    uint32_t name_len;
    uint32_t file; /* input file index */
    sts_dtype dtype;
    uint32_t ndim;
    const uint64_t *offsets;  /* ndim entries: saved_offsets */
    const uint64_t *shape;    /* ndim entries: the block's shape */
    uint64_t data_off;        /* absolute byte offset of the block's data in its file */
    const uint64_t *declared; /* ndim entries: the global shape the block's writer declared
                               * (a direct save), or NULL: the shape is only derived */
} sts_plan_block;

/* One entry of a tensor -> output file mapping (file_index >= 1). */
typedef struct sts_plan_map_entry {
    const char *name; /* NUL-terminated */
    unsigned file_index;
} sts_plan_map_entry;

typedef struct sts_plan_opts {
    const sts_plan_map_entry *map; /* NULL: no mapping */
    size_t nmap;
    uint64_t max_file_size; /* > 0 and no mapping: split in canonical order */
    sts_layout layout;
    uint64_t align;
    int drop_unmapped;
    const char *const *file_names; /* input file names for messages, or NULL */
    int measure_only; /* headers measured, not encoded: sts_plan_file.header stays NULL */
} sts_plan_opts;

typedef struct sts_plan_tensor {
    const char *name;
    uint32_t name_len;
    sts_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape; /* global shape, ndim entries (owned by the plan) */
    uint64_t nbytes;
    uint32_t file;        /* output file index, 0-based */
    uint64_t out_off;     /* absolute offset of the data in the output file */
    uint64_t stream_off;  /* offset in the stream of all data sections */
    uint64_t key;         /* first appearance (sts_plan_summary.key) */
    uint64_t given;       /* place in the order the files were filled in (mapping order, ...) */
    size_t first_block;   /* range of sts_plan.order: the tensor's distinct, non-empty */
    size_t nblocks;       /* blocks sorted by their start in dimension 0 */
    uint64_t cost_blocks; /* distinct blocks in all, fixed at layout: weighs the rank shares */
    uint32_t flags;       /* the caller's, carried from sts_plan_summary.flags */
} sts_plan_tensor;

typedef struct sts_plan_file {
    char *name;          /* "model-KKKKK-of-NNNNN.safetensors" */
    void *header;        /* 8-byte prefix + JSON + padding (sts_free'd by the plan); NULL if
                          * measure_only */
    size_t header_len;   /* = start of the data section */
    uint64_t data_size;  /* bytes of the data section */
    uint64_t stream_off; /* start of the data section in the stream */
    size_t first_tensor; /* range of sts_plan.tensors */
    size_t ntensors;
} sts_plan_file;

typedef struct sts_plan {
    const sts_plan_block *blocks; /* borrowed */
    size_t nblocks_in;
    size_t *order; /* block indices, grouped per tensor */
    sts_plan_tensor *tensors;
    size_t ntensors; /* tensors written, in output order (file, offset) */
    size_t ndropped; /* tensors dropped because the mapping lacks them */
    sts_plan_file *files;
    size_t nfiles;        /* output files that hold at least one tensor */
    unsigned file_count;  /* NNNNN of the file names */
    uint64_t total_bytes; /* sum of all data sections */
    sts_layout layout;
    uint64_t *shape_pool; /* storage of the global shapes */
} sts_plan;

/*
 * The planner in two stages, so that a distributed caller (meta.c) can run
 * the first on the blocks of the tensors it owns and the second on every
 * tensor's summary:
 *
 *  - sts__plan_group(): groups blocks by name and runs every per-tensor
 *    check (dtype and rank agreement, global shape, declared global shapes,
 *    coverage, duplicates);
 *  - sts__plan_layout_from_summaries(): output files, headers and offsets, from
 *    one summary per tensor.
 *
 * Keys order first appearance.  sts__plan_build() numbers blocks 0, 1, ...;
 * a distributed caller uses (input file << 32 | entry in that file's header),
 * which is the same order.
 */
typedef struct sts_plan_summary {
    const char *name; /* NUL-terminated */
    uint32_t name_len;
    sts_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape; /* global shape */
    uint64_t nbytes;
    uint64_t key;         /* the key of the tensor's first block */
    size_t first_block;   /* its distinct non-empty blocks: a range of sts_plan_groups.order, */
    size_t nblocks;       /* sorted by their start in dimension 0 */
    uint64_t cost_blocks; /* a received summary: the owner's block count, only to weigh the
                           * rank shares (first_block and nblocks stay 0 until fetched) */
    uint32_t flags;       /* the caller's (0 from sts__plan_group): copied to the plan tensor */
} sts_plan_summary;

typedef struct sts_plan_groups {
    sts_plan_summary *tensors; /* in key order; names borrowed from the blocks */
    size_t ntensors;
    size_t *order;        /* block indices, grouped per tensor */
    uint64_t *shape_pool; /* storage of the summaries' shapes */
    uint64_t fail_key;    /* after an error: where it is in input order (below) */
} sts_plan_groups;

/* Local.  FNV-1a of a tensor name: meta.c's owner rank of a tensor. */
uint64_t sts__plan_hash(const char *s, size_t n);

/* fail_key of an error found in the tensor checks: every block check comes first. */
#define STS_PLAN_KEY_TENSOR ((uint64_t)1 << 63)

/*
 * Local.  Stage 1 on blocks[0..nblocks), which are in key order (keys NULL:
 * the index is the key).  On an error, g->fail_key tells which error the
 * serial planner would have met first (smaller first).  Errors: those of
 * sts__plan_build() except the mapping and encoding ones.
 */
int sts__plan_group(const sts_plan_block *blocks, size_t nblocks, const uint64_t *keys,
                    const sts_plan_opts *opts, sts_plan_groups *g, sts_diag *diag);
/* Local.  NULL-safe on a zeroed struct. */
void sts__plan_groups_free(sts_plan_groups *g);

/*
 * Local.  Stage 2 on the summaries of every tensor, in key order (borrowed
 * until sts__plan_free).  The plan's blocks and order are left NULL; each
 * tensor's first_block and nblocks are copied from its summary.  Errors:
 * STS_E_MAPPING, STS_E_VALIDATION_OVERFLOW, STS_E_NOMEM and the codes of
 * sts_header_encode.
 */
int sts__plan_layout_from_summaries(const sts_plan_summary *s, size_t n, const sts_plan_opts *opts,
                                    sts_plan **out, sts_diag *diag);

/*
 * Local.  Encodes the header of output file f of a plan laid out with
 * measure_only (opts as then), for the one rank that writes it, when it is
 * about to: holding every header from the layout on would add them to that
 * rank's peak.  *out (sts_free) receives exactly files[f].header_len bytes.
 * Errors: STS_E_NOMEM, the codes of sts_header_encode, STS_E_INTERNAL if
 * the bytes do not match the measured layout.
 */
int sts__plan_layout_header(const sts_plan *p, size_t f, const sts_plan_opts *opts, void **out,
                            sts_diag *diag);

/*
 * Local.  Builds the plan from blocks[0..nblocks) (borrowed until
 * sts__plan_free).  Errors: STS_E_DTYPE_MISMATCH, STS_E_SHARDING_INFO (rank
 * mismatch), STS_E_COVERAGE_GAP, STS_E_COVERAGE_OVERLAP, STS_E_MAPPING,
 * STS_E_VALIDATION_OVERFLOW, STS_E_UNSUPPORTED, STS_E_NOMEM and the codes of
 * sts_header_encode; diag names the tensor and the files.
 */
int sts__plan_build(const sts_plan_block *blocks, size_t nblocks, const sts_plan_opts *opts,
                    sts_plan **out, sts_diag *diag);
/* Local.  NULL is a no-op. */
void sts__plan_free(sts_plan *p);
/*
 * Local.  Sets *po from the output options of a consolidation (or a direct
 * save) and its resolved mapping map[0..nmap) (borrowed), headers measured
 * only (rank 0 encodes each when it writes it); file_names stays NULL.
 */
void sts__plan_opts_output(sts_plan_opts *po, const sts_consolidate_opts *co,
                           const sts_plan_map_entry *map, size_t nmap);

/*
 * What a block weighs in the rank shares, in stream bytes: each block costs
 * a rank metadata (the fetched record, the plan entry) and an I/O piece
 * whatever its size, so shares are cut by bytes + STS_PLAN_BLOCK_COST x
 * blocks.  Checkpoints of large tensors split exactly as by bytes; many tiny
 * tensors (MoE experts) no longer pile their blocks on the last ranks.
 */
#define STS_PLAN_BLOCK_COST 4096

/*
 * Local.  Rank r's share [*lo, *hi) of the stream (before rounding to rows):
 * the stream cut into nranks parts of equal weight (STS_PLAN_BLOCK_COST).
 * O(tensors).  Every rank computes the same cuts from the same plan.
 */
void sts__plan_chunk_rank_range(const sts_plan *p, int rank, int nranks, uint64_t *lo,
                                uint64_t *hi);

/* A chunk: rows [row0, row1) of one tensor, contiguous in the output file. */
typedef struct sts_plan_chunk {
    size_t tensor;    /* index in sts_plan.tensors */
    uint32_t file;    /* output file */
    uint64_t out_off; /* absolute output offset */
    uint64_t len;     /* bytes */
    uint64_t row0, row1;
    uint32_t d;        /* split dimension (byte view) */
    uint64_t rowbytes; /* bytes per row */
} sts_plan_chunk;

/* Iterator over a rank's chunks in stream order.  Fields are private. */
typedef struct sts_plan_iter {
    const sts_plan *p;
    uint64_t lo, hi, budget;
    size_t t;           /* current tensor */
    uint64_t row, rend; /* next row and end row of the current tensor */
    uint32_t d;         /* split dimension of the current tensor */
    uint64_t rowbytes, nd;
    int started;
} sts_plan_iter;

/*
 * Local.  Starts iterating over rank's chunks with at most budget bytes each
 * (budget >= 8).  Every row of every tensor belongs to exactly one rank, and
 * the ranks' chunks tile the stream.
 */
void sts__plan_chunk_iter_init(sts_plan_iter *it, const sts_plan *p, int rank, int nranks,
                               uint64_t budget);
/* Local.  Next chunk: returns 1 and fills *c, or 0 at the end. */
int sts__plan_chunk_iter_next(sts_plan_iter *it, sts_plan_chunk *c);

/* The split dimension, row size and rows of a tensor for a budget (byte view). */
void sts__plan_chunk_rows(const sts_plan_tensor *t, uint64_t budget, uint32_t *d,
                          uint64_t *rowbytes, uint64_t *nrows);

/* One input run that fills part of a chunk. */
typedef struct sts_plan_piece {
    size_t block;    /* index in sts_plan.blocks */
    uint32_t file;   /* input file */
    uint64_t in_off; /* absolute input offset */
    uint64_t len;    /* bytes of the run */
    uint64_t pos;    /* offset in the chunk buffer of the run's first byte */
    int contiguous;  /* the run is also contiguous in the chunk: no scatter needed */
} sts_plan_piece;

/* Reusable scratch for sts__plan_chunk_pieces (zero-initialise; free with
 * sts__plan_chunk_pieces_free). */
typedef struct sts_plan_pieces {
    sts_plan_piece *v;
    size_t n, cap;
    size_t *active; /* sweep state: candidate blocks of the current tensor */
    size_t nactive, capactive;
    size_t tensor, next; /* sweep position */
    uint64_t last_row;
    int valid;
} sts_plan_pieces;

/*
 * Local.  Fills ps->v[0..ps->n) with the runs of chunk c, in block order.
 * Successive calls for chunks of one tensor in increasing row order reuse a
 * sweep over the blocks, so a rank's walk costs about one pass over them.
 * Errors: STS_E_NOMEM.
 */
int sts__plan_chunk_pieces(const sts_plan *p, const sts_plan_chunk *c, sts_plan_pieces *ps,
                           sts_diag *diag);
void sts__plan_chunk_pieces_free(sts_plan_pieces *ps);

/*
 * Local.  Copies the run of piece pc, read into src (pc->len bytes), to its
 * places in the buffer dst of chunk c (c->len bytes).
 */
void sts__plan_chunk_scatter(const sts_plan *p, const sts_plan_chunk *c, const sts_plan_piece *pc,
                             const void *src, void *dst);

#endif /* STS_PLAN_H */
