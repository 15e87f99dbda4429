/*
 * par_consolidate_gen.h - a small rank-file generator and output checker for
 * the consolidation tests (independent of the sharded writer).
 *
 * A model is a list of tensors and blocks; gen_write() stores every file's
 * blocks as a canonical safetensors file with DCP metadata
 * (shard-RRRRR-model-00001-of-00001.safetensors).  Byte i of a tensor's
 * row-major bytes is gen_value(name, i), so outputs are checked without
 * reference data: gen_expected() builds the canonical single-file output,
 * gen_check_dir() checks any layout or split by reading its headers.
 */
#ifndef PAR_CONSOLIDATE_GEN_H
#define PAR_CONSOLIDATE_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "stshard.h"

#define GEN_MAXDIM 4

typedef struct gen_tensor {
    char *name;
    sts_dtype dt;
    uint32_t ndim;
    uint64_t shape[GEN_MAXDIM];
} gen_tensor;

typedef struct gen_block {
    size_t t;
    uint32_t file;
    uint64_t off[GEN_MAXDIM], sh[GEN_MAXDIM];
} gen_block;

typedef struct gen_model {
    gen_tensor *t;
    size_t nt, capt;
    gen_block *b;
    size_t nb, capb;
    uint32_t nfiles;
    int python_spacing; /* DCP_SHARDING_INFO with ", " and ": " as PyTorch writes it */
} gen_model;

/* How gen_split() shards a tensor over the model's files. */
typedef enum gen_how {
    GEN_ROW,     /* torch.chunk of dimension 0: uneven, possibly empty blocks */
    GEN_COL,     /* torch.chunk of the last dimension */
    GEN_GRID,    /* dimensions 0 and 1 (and 2) split at once */
    GEN_REPLICA, /* the full tensor in every file (identical duplicates) */
    GEN_ONE      /* the full tensor in one file */
} gen_how;

void gen_init(gen_model *m, uint32_t nfiles);
void gen_free(gen_model *m);
size_t gen_tensor_add(gen_model *m, const char *name, sts_dtype dt, uint32_t ndim,
                      const uint64_t *shape);
void gen_block_add(gen_model *m, size_t t, uint32_t file, const uint64_t *off, const uint64_t *sh);
void gen_split(gen_model *m, size_t t, gen_how how);

/* Byte i of the named tensor's row-major bytes. */
unsigned char gen_value(const char *name, uint64_t i);

/* Local.  Writes the rank files into dir (created).  Returns 0 or -1. */
int gen_write(const gen_model *m, const char *dir);

/* Local.  The canonical single-file consolidation of m (malloc'd). */
int gen_expected(const gen_model *m, const char *const *drop, unsigned char **buf, size_t *len);

/*
 * Local.  Checks the consolidated checkpoint in dir: every tensor of m (minus
 * drop[], a NULL-terminated list or NULL) appears exactly once across the
 * files the index names, with the right dtype, shape and bytes.  sample > 0
 * checks only that many spread-out bytes per tensor plus both ends.
 * Returns the number of problems (printed to stderr).
 */
int gen_check_dir(const gen_model *m, const char *dir, const char *const *drop, uint64_t sample);

/* Local.  Reads a whole file (malloc'd); NULL on error. */
unsigned char *gen_read_file(const char *path, size_t *len);

/* Local.  Removes dir and everything below it (best effort). */
void gen_rmtree(const char *dir);

#endif
