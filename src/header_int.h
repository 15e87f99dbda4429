/*
 * header_int.h - the parsed header's layout, shared by header.c (parse and
 * validate), header_access.c (accessors, file reading, sharding info) and
 * header_encode.c.  Private to the library.
 */
#ifndef STS_HEADER_INT_H
#define STS_HEADER_INT_H

#include <stdio.h>

#include "hashtab.h"
#include "internal.h"

/* A chain of blocks holding the strings and shapes a header owns. */
typedef struct sts__arena_blk sts__arena_blk;

/* One __metadata__ entry; both strings NUL-terminated, lengths exclude the NUL. */
typedef struct sts__meta_kv {
    const char *key;
    size_t klen;
    const char *value;
    size_t vlen;
} sts__meta_kv;

struct sts_header {
    sts_tensor_info *t; /* n entries in data-offset order */
    size_t n, cap;
    sts__meta_kv *meta; /* nmeta entries in file order */
    size_t nmeta, meta_cap;
    sts__meta_kv **meta_sorted; /* the same entries by key, bytewise */
    unsigned has_meta;          /* times __metadata__ appeared (null included) */
    sts__hashtab names;         /* name -> index into t */
    sts__arena_blk *arena;
    uint64_t data_size; /* end of the last tensor */
};

/* The most tensors a header may hold: the name table's limit. */
#define STS_MAX_TENSORS STS_HASHTAB_MAX_ITEMS

/* 8-byte-aligned storage from the arena *a, valid until the arena is freed; NULL when out of
 * memory.  A zero-byte request returns a valid, distinct pointer. */
void *sts__header_arena_alloc(sts__arena_blk **a, size_t bytes);
/* Copy of s[0..n) plus a NUL, in the arena. */
char *sts__header_arena_strdup(sts__arena_blk **a, const char *s, size_t n);

/* sts__fail with the rule's name (sts_errname(code)) and ": " put before the message. */
int sts__header_rule_fail(sts_diag *diag, int code, const char *fmt, ...) STS_PRINTF(3, 4);
/* Bytewise comparison of two byte strings (a shorter prefix sorts first), like Rust's Ord. */
int sts__header_bytes_cmp(const char *a, size_t an, const char *b, size_t bn);

#endif /* STS_HEADER_INT_H */
