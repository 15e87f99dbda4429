/*
 * hashtab.c - the name -> index table (hashtab.h).
 */
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"

#define SLOT(hash, index) (((hash)&0xFFFFFFFF00000000ULL) | ((uint64_t)(index) + 1))
#define SLOT_INDEX(slot)  ((size_t)((slot)&0xFFFFFFFFULL) - 1)
#define SLOT_FP(slot)     ((slot)&0xFFFFFFFF00000000ULL)
#define MIN_SLOTS         16

void sts__hashtab_init(sts__hashtab *t, sts__hashtab_key_fn key, const void *ctx)
{
    memset(t, 0, sizeof *t);
    t->key = key;
    t->ctx = ctx;
}

void sts__hashtab_free(sts__hashtab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
}

uint64_t sts__hashtab_hash(const char *s, size_t n)
{
    /* Multiply-xorshift over 8-byte words; quality is ample for a probe table. */
    uint64_t h = 0x243F6A8885A308D3ULL ^ (n * 0x9E3779B97F4A7C15ULL);
    uint64_t w;
    while (n >= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    w = 0;
    if (n)
        memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

/* Whether item index's key is s[0..n). */
static int key_is(const sts__hashtab *t, size_t index, const char *s, size_t n)
{
    size_t len = 0;
    const char *k = t->key(t->ctx, index, &len);
    return len == n && (n == 0 || memcmp(k, s, n) == 0);
}

/* Puts slot value v into slots (mask) at the first free place from hash: no comparison. */
static void place(uint64_t *slots, size_t mask, uint64_t hash, uint64_t v)
{
    size_t s = (size_t)hash & mask;
    while (slots[s])
        s = (s + 1) & mask;
    slots[s] = v;
}

/* Moves every item to a new array of nslots slots (a power of two). */
static int rehash(sts__hashtab *t, size_t nslots)
{
    uint64_t *slots = sts__calloc_array(nslots, sizeof *slots);
    if (!slots)
        return STS_E_NOMEM;
    for (size_t s = 0; t->slots && s <= t->mask; s++) {
        size_t i, len = 0;
        const char *k;
        if (!t->slots[s])
            continue;
        i = SLOT_INDEX(t->slots[s]);
        k = t->key(t->ctx, i, &len);
        place(slots, nslots - 1, sts__hashtab_hash(k, len), t->slots[s]);
    }
    free(t->slots);
    t->slots = slots;
    t->mask = nslots - 1;
    return STS_OK;
}

int sts__hashtab_reserve(sts__hashtab *t, size_t n)
{
    size_t nslots = MIN_SLOTS;
    if (n > STS_HASHTAB_MAX_ITEMS)
        return STS_E_UNSUPPORTED;
    while (nslots < n * 2)
        nslots *= 2;
    if (t->slots && nslots <= t->mask + 1)
        return STS_OK;
    return rehash(t, nslots);
}

int sts__hashtab_insert(sts__hashtab *t, size_t index, uint64_t hash, size_t *found)
{
    size_t s;
    if (index >= STS_HASHTAB_MAX_ITEMS)
        return STS_E_UNSUPPORTED;
    if (!t->slots || (t->count + 1) * 2 > t->mask + 1) {
        int rc = sts__hashtab_reserve(t, t->slots ? (t->mask + 1) : MIN_SLOTS / 2);
        if (rc != STS_OK)
            return rc;
    }
    for (s = (size_t)hash & t->mask; t->slots[s]; s = (s + 1) & t->mask) {
        size_t len = 0, other = SLOT_INDEX(t->slots[s]);
        const char *k;
        if (SLOT_FP(t->slots[s]) != SLOT_FP(hash))
            continue;
        k = t->key(t->ctx, index, &len);
        if (key_is(t, other, k, len)) {
            if (found)
                *found = other;
            return 1;
        }
    }
    t->slots[s] = SLOT(hash, index);
    t->count++;
    return STS_OK;
}

long sts__hashtab_find(const sts__hashtab *t, const char *s, size_t n)
{
    uint64_t hash;
    if (!t->slots || (!s && n))
        return -1;
    hash = sts__hashtab_hash(s, n);
    for (size_t p = (size_t)hash & t->mask; t->slots[p]; p = (p + 1) & t->mask) {
        size_t i = SLOT_INDEX(t->slots[p]);
        if (SLOT_FP(t->slots[p]) == SLOT_FP(hash) && key_is(t, i, s, n))
            return (long)i;
    }
    return -1;
}
