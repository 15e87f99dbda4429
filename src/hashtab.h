/*
 * hashtab.h - the one name -> index table: the header's tensor names, the
 * planner's tensor names and the tensor -> file mapping.
 *
 * The table stores no keys.  The items live in the caller's array; the
 * table maps a key to an item's index and asks the caller's key function for
 * the key of an index when it must compare or rehash.  Open addressing with
 * linear probing, kept at most half full.  A slot holds the index + 1 in its
 * low 32 bits and the top 32 bits of the key's hash above them, so a probe
 * compares fingerprints and touches an item's key only on a likely match (a
 * cache miss saved per probe on million-tensor headers).  A zeroed table is
 * a valid empty one once its key function is set (sts__hashtab_init).
 * Format layer (src/layer.h): no MPI.
 */
#ifndef STS_HASHTAB_H
#define STS_HASHTAB_H

#include "internal.h"

/* The most items a table holds: indices must fit the slot's low half. */
#define STS_HASHTAB_MAX_ITEMS 0xFFFFFFFEULL

/* The key (*len bytes, may hold NUL) of the caller's item index. */
typedef const char *(*sts__hashtab_key_fn)(const void *ctx, size_t index, size_t *len);

typedef struct sts__hashtab {
    uint64_t *slots; /* 0 = empty; NULL until the first insert or reserve */
    size_t mask;     /* slot count - 1 */
    size_t count;
    sts__hashtab_key_fn key;
    const void *ctx;
} sts__hashtab;

/* Local.  An empty table whose keys come from key(ctx, index, &len). */
void sts__hashtab_init(sts__hashtab *t, sts__hashtab_key_fn key, const void *ctx);

/* Local.  Frees the slots; the table is empty afterwards (key function kept). */
void sts__hashtab_free(sts__hashtab *t);

/* Local.  The hash of s[0..n) the table uses. */
uint64_t sts__hashtab_hash(const char *s, size_t n);

/*
 * Local.  Room for n items in total without growing (bulk loads size the
 * table once).  Returns STS_OK, STS_E_NOMEM, or STS_E_UNSUPPORTED when n is
 * above STS_HASHTAB_MAX_ITEMS; the table is unchanged on error.
 */
int sts__hashtab_reserve(sts__hashtab *t, size_t n);

/*
 * Local.  Adds item index, whose key hashes to hash (sts__hashtab_hash),
 * unless an item with an equal key is in the table: then nothing is added,
 * *found (may be NULL) receives that item's index and the result is 1.
 * Grows the table as needed.  Returns STS_OK when added, 1, STS_E_NOMEM or
 * STS_E_UNSUPPORTED (index or count above STS_HASHTAB_MAX_ITEMS).
 */
int sts__hashtab_insert(sts__hashtab *t, size_t index, uint64_t hash, size_t *found);

/* Local.  The index of the item with key s[0..n), or -1. */
long sts__hashtab_find(const sts__hashtab *t, const char *s, size_t n);

/* Local.  Starts loading the slot hash will probe first (bulk inserts hide cache misses). */
static inline void sts__hashtab_prefetch(const sts__hashtab *t, uint64_t hash)
{
    if (t->slots)
        __builtin_prefetch(&t->slots[(size_t)hash & t->mask]);
}

#endif /* STS_HASHTAB_H */
