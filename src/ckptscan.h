/*
 * ckptscan.h - the one answer to "what does this checkpoint directory hold",
 * shared by the reader, verify, consolidate, mapping --reference and (through
 * sts_ckpt_scan) inspect.  The rules are in docs/format.md, "What a
 * checkpoint directory holds".
 */
#ifndef STS_CKPTSCAN_H
#define STS_CKPTSCAN_H

#include "internal.h"

#define STS_INDEX_NAME  "model.safetensors.index.json"
#define STS_SINGLE_NAME "model.safetensors"

/* What a directory holds.  Every field is owned by the scan (sts__ckptscan_free). */
typedef struct sts__ckptscan {
    sts_ckpt_kind kind; /* INDEXED, FILE (model.safetensors) or SHARDED (rank files) */
    char **names;       /* every visible regular *.safetensors file name, sorted bytewise */
    size_t n;
    size_t nhidden; /* hidden entries skipped (ours: ".<name>.stshard-partial" / "-old") */
    size_t nother;  /* visible entries that are not checkpoint files (README, config.json) */
    char *culprit;  /* on STS_E_IO for an entry that is not a regular file: its path */
} sts__ckptscan;

/*
 * Local.  Lists dir once and classifies it.  In SHARDED form the rank files
 * are all of names; in INDEXED form the members are what the index names
 * (the caller reads it), in FILE form model.safetensors; other names are
 * leftovers.  Errors: STS_E_NOENT/STS_E_ACCESS/STS_E_IO (cannot list),
 * STS_E_IO (a *.safetensors or index entry that is not a regular file; never
 * opened), STS_E_AMBIGUOUS_INPUT (a Hugging Face checkpoint and rank files),
 * STS_E_EMPTY_INPUT (no index and no *.safetensors), STS_E_NOMEM.  On error
 * the scan is still freed with sts__ckptscan_free.
 */
int sts__ckptscan_dir(const char *dir, sts__ckptscan *s, sts_diag *diag);
/* Local.  NULL-safe; leaves the scan zeroed. */
void sts__ckptscan_free(sts__ckptscan *s);
/* Local.  1 when name is "shard-RRRRR-model-KKKKK-of-NNNNN.safetensors" (docs/format.md §3). */
int sts__ckptscan_is_rank_name(const char *name);

#endif
