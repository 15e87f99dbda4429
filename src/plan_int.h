/*
 * plan_int.h - state shared by the planner's two stages (plan.c groups and
 * checks blocks; plan_layout.c lays out the output files).  Not part of any
 * other module's view.
 */
#ifndef STS_PLAN_INT_H
#define STS_PLAN_INT_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_PLAN
#error "plan_int.h belongs to the plan layer (src/layer.h); a lower layer may not include it"
#endif

#include "hashtab.h"
#include "plan.h"

/* Work state of one tensor while the plan is built. */
typedef struct tacc {
    const char *name; /* borrowed from a block or a summary */
    uint32_t name_len;
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t key;          /* first appearance (sts_plan_summary.key) */
    size_t first, n;       /* range of order[] */
    size_t first_seen;     /* first block (for messages) */
    const uint64_t *shape; /* into shape_pool, or a summary's */
    uint64_t nbytes;
    uint64_t fill_key; /* position in the file's given order */
    uint64_t out_off;
    unsigned file;        /* 1-based output file; 0 = dropped */
    uint64_t cost_blocks; /* sts_plan_tensor.cost_blocks */
    uint32_t flags;       /* sts_plan_tensor.flags */
} tacc;

typedef struct builder {
    const sts_plan_block *b;
    size_t nb;
    const uint64_t *keys; /* per block, or NULL: the block index */
    const sts_plan_opts *o;
    sts_diag *diag;
    uint32_t *tid;      /* tensor id of every block */
    sts__hashtab names; /* tensor name -> id */
    tacc *t;
    size_t nt, capt;
    size_t *order;
    size_t *scratch; /* sort scratch: as many entries as the largest tensor has blocks */
    unsigned file_count;
    size_t ndropped;
} builder;

typedef int (*sts__plan_cmp)(size_t a, size_t b, const void *ctx);
void sts__plan_sort_idx(size_t *a, size_t n, size_t *tmp, sts__plan_cmp cmp, const void *ctx);
int sts__plan_name_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* Adds tensor id (already in B->t) to the name table.  STS_E_NOMEM. */
int sts__plan_table_add(builder *B, size_t id);
/* The tensor id of name, or -1. */
long sts__plan_lookup(const builder *B, const char *name, size_t len);
/* Stage 2: assigns files, encodes headers, fixes offsets and the stream. */
int sts__plan_layout(builder *B, sts_plan *P);

#endif /* STS_PLAN_INT_H */
