/*
 * unit_hashtab.c - the name -> index table (src/hashtab.c) and the array
 * growth helper sts__grow (src/util.c): insert, find, duplicates, keys with
 * NUL bytes and the empty key, growth, reserve, limits, and many keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "test_util.h"

typedef struct keys {
    char **s;
    size_t *len;
    size_t n;
} keys;

static const char *key_of(const void *ctx, size_t i, size_t *len)
{
    const keys *k = ctx;
    *len = k->len[i];
    return k->s[i];
}

static int insert(sts__hashtab *t, const keys *k, size_t i, size_t *found)
{
    return sts__hashtab_insert(t, i, sts__hashtab_hash(k->s[i], k->len[i]), found);
}

static void test_small(void)
{
    /* Byte keys, NUL inside and the empty key included. */
    static char k0[] = "alpha", k1[] = "a\0b", k2[] = "a\0c", k3[] = "a", k4[] = "", k5[] = "alpha";
    char *s[] = {k0, k1, k2, k3, k4, k5};
    size_t len[] = {5, 3, 3, 1, 0, 5};
    keys k = {s, len, 6};
    sts__hashtab t;
    size_t found = 99;
    memset(&t, 0, sizeof t);
    CHECK(sts__hashtab_find(&t, "alpha", 5) == -1); /* a zeroed table is empty */
    sts__hashtab_init(&t, key_of, &k);
    CHECK(sts__hashtab_find(&t, "alpha", 5) == -1);
    for (size_t i = 0; i < 5; i++)
        CHECK_OK(insert(&t, &k, i, &found));
    CHECK(found == 99);
    CHECK(t.count == 5);
    /* A duplicate key is not added; the first item's index comes back. */
    CHECK(insert(&t, &k, 5, &found) == 1);
    CHECK(found == 0);
    CHECK(insert(&t, &k, 3, NULL) == 1);
    CHECK(t.count == 5);
    CHECK(sts__hashtab_find(&t, "alpha", 5) == 0);
    CHECK(sts__hashtab_find(&t, "a\0b", 3) == 1);
    CHECK(sts__hashtab_find(&t, "a\0c", 3) == 2);
    CHECK(sts__hashtab_find(&t, "a", 1) == 3);
    CHECK(sts__hashtab_find(&t, "", 0) == 4);
    CHECK(sts__hashtab_find(&t, NULL, 0) == 4);
    CHECK(sts__hashtab_find(&t, NULL, 1) == -1);
    CHECK(sts__hashtab_find(&t, "alph", 4) == -1);
    CHECK(sts__hashtab_find(&t, "alphA", 5) == -1);
    CHECK(sts__hashtab_find(&t, "a\0", 2) == -1);
    /* The hash covers every byte and the length. */
    CHECK(sts__hashtab_hash("a\0b", 3) != sts__hashtab_hash("a\0c", 3));
    CHECK(sts__hashtab_hash("a", 1) != sts__hashtab_hash("a\0", 2));
    CHECK(sts__hashtab_hash("0123456789abcdef", 16) != sts__hashtab_hash("0123456789abcdeF", 16));
    CHECK(sts__hashtab_hash("alpha", 5) == sts__hashtab_hash(k5, 5));
    sts__hashtab_free(&t);
    CHECK(t.slots == NULL && t.count == 0);
    CHECK(sts__hashtab_find(&t, "alpha", 5) == -1);
    /* Usable again after free. */
    CHECK_OK(insert(&t, &k, 2, NULL));
    CHECK(sts__hashtab_find(&t, "a\0c", 3) == 2);
    CHECK(sts__hashtab_find(&t, "alpha", 5) == -1);
    sts__hashtab_free(&t);
}

static keys make_keys(size_t n)
{
    keys k = {calloc(n, sizeof(char *)), calloc(n, sizeof(size_t)), n};
    for (size_t i = 0; k.s && k.len && i < n; i++) {
        char buf[64];
        /* Long shared prefixes, so the word-wise hash must look at the tail too. */
        int w = snprintf(buf, sizeof buf, "model.layers.%zu.self_attn.q_proj.weight", i);
        k.s[i] = malloc((size_t)w + 1);
        if (k.s[i])
            memcpy(k.s[i], buf, (size_t)w + 1);
        k.len[i] = (size_t)w;
    }
    return k;
}

static void free_keys(keys *k)
{
    for (size_t i = 0; k->s && i < k->n; i++)
        free(k->s[i]);
    free(k->s);
    free(k->len);
}

static void test_many(size_t n)
{
    keys k = make_keys(n);
    sts__hashtab t;
    size_t grew = 0, last = 0;
    int bad = 0;
    sts__hashtab_init(&t, key_of, &k);
    for (size_t i = 0; i < n; i++) {
        bad += insert(&t, &k, i, NULL) != STS_OK;
        if (t.mask + 1 != last) {
            grew++;
            last = t.mask + 1;
        }
        /* At most half full, a power of two. */
        bad += (t.count * 2 > t.mask + 1) || ((t.mask + 1) & t.mask) != 0;
    }
    CHECK(bad == 0);
    CHECK(t.count == n);
    /* Started at 16 slots and doubled as it filled: ends at the least power of two >= 2n. */
    {
        size_t want = 16;
        while (want < 2 * n)
            want *= 2;
        CHECK(t.mask + 1 == want);
        CHECK(grew > 5);
    }
    for (size_t i = 0; i < n; i++)
        bad += sts__hashtab_find(&t, k.s[i], k.len[i]) != (long)i;
    CHECK(bad == 0);
    for (size_t i = 0; i < n; i += 7)
        bad += insert(&t, &k, i, NULL) != 1;
    CHECK(bad == 0);
    CHECK(t.count == n);
    CHECK(sts__hashtab_find(&t, "model.layers.0.self_attn.q_proj.weighT", 38) == -1);
    CHECK(sts__hashtab_find(&t, "model.layers.1000000.self_attn.q_proj.weight", 44) == -1);
    sts__hashtab_free(&t);

    /* Reserved up front: the slots never move while n items go in. */
    sts__hashtab_init(&t, key_of, &k);
    CHECK_OK(sts__hashtab_reserve(&t, n));
    {
        uint64_t *slots = t.slots;
        for (size_t i = 0; i < n; i++) {
            sts__hashtab_prefetch(&t, sts__hashtab_hash(k.s[i], k.len[i]));
            bad += insert(&t, &k, i, NULL) != STS_OK;
        }
        CHECK(bad == 0);
        CHECK(t.slots == slots);
    }
    CHECK_OK(sts__hashtab_reserve(&t, n / 2)); /* smaller: nothing happens */
    CHECK(t.mask + 1 >= 2 * n);
    for (size_t i = 0; i < n; i++)
        bad += sts__hashtab_find(&t, k.s[i], k.len[i]) != (long)i;
    CHECK(bad == 0);
    sts__hashtab_free(&t);
    free_keys(&k);
}

static void test_limits(void)
{
    sts__hashtab t;
    keys k = make_keys(1);
    sts__hashtab_init(&t, key_of, &k);
    CHECK_RC(sts__hashtab_reserve(&t, (size_t)STS_HASHTAB_MAX_ITEMS + 1), STS_E_UNSUPPORTED);
    CHECK(t.slots == NULL);
    CHECK_RC(sts__hashtab_insert(&t, (size_t)STS_HASHTAB_MAX_ITEMS, 1, NULL), STS_E_UNSUPPORTED);
    CHECK_OK(sts__hashtab_reserve(&t, 0));
    CHECK(t.mask + 1 == 16);
    sts__hashtab_free(&t);
    free_keys(&k);
}

static void test_grow(void)
{
    size_t cap = 0;
    int *v = NULL, *w;
    v = sts__grow(v, &cap, 1, sizeof *v, 16);
    CHECK(v != NULL && cap == 16);
    w = sts__grow(v, &cap, 16, sizeof *v, 16); /* fits: the same array */
    CHECK(w == v && cap == 16);
    v = sts__grow(v, &cap, 17, sizeof *v, 16);
    CHECK(v != NULL && cap == 32);
    v = sts__grow(v, &cap, 100, sizeof *v, 16);
    CHECK(v != NULL && cap == 128);
    for (int i = 0; v && i < 100; i++)
        v[i] = i;
    /* Too big: NULL, and the array and capacity stay. */
    w = sts__grow(v, &cap, (size_t)-1 / 2, sizeof *v, 16);
    CHECK(w == NULL && cap == 128);
    CHECK(v && v[99] == 99);
    free(v);
    /* first 0 means 1; need 0 still gives an array. */
    cap = 0;
    v = sts__grow(NULL, &cap, 0, sizeof *v, 0);
    CHECK(v != NULL && cap == 1);
    v = sts__grow(v, &cap, 5, sizeof *v, 0);
    CHECK(v != NULL && cap == 8);
    free(v);
}

int main(void)
{
    test_small();
    test_many(1000);
    test_many(200000);
    test_limits();
    test_grow();
    if (test_failures)
        fprintf(stderr, "unit_hashtab: %d failure(s)\n", test_failures);
    return TEST_EXIT();
}
