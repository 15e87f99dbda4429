/*
 * fuzz_mapping.c - libFuzzer harness for the small JSON files stshard reads:
 * tensor -> file mappings (sts_mapping_load_json) and
 * model.safetensors.index.json, through both readers of an index
 * (sts_mapping_from_reference, and verify's cross-file checks).
 *
 * The first input byte picks the file; the rest is its text, written to a
 * real file in a private temporary directory (the readers take paths).  The
 * index sits in a directory beside two valid model files, so a weight_map
 * that names them reaches the cross-file checks.  Invariants:
 *  - mapping: the result is Ok or InvalidMapping (the diag agrees and names
 *    the file); a loaded mapping has positive indices, finds every name, and
 *    survives a write / load round trip unchanged;
 *  - index: from_reference gives Ok, InvalidIndex or InvalidMapping, and
 *    numbers the files 1..F; verify reports problems with known codes and
 *    returns the first; when verify finds no problem every mapped tensor
 *    exists, in the file named.
 * Violations abort, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stshard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_mapping: invariant failed: %s (line %d)\n", #c, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The two model files of the reference directory and their tensors. */
static const char *const model_files[2] = {"model-00001-of-00002.safetensors",
                                           "model-00002-of-00002.safetensors"};
static const char *const tensor_names[4] = {"embed.weight", "layers.0.w", "norm.weight", "step"};
static const unsigned tensor_file[4] = {1, 1, 2, 2};

static char root[256], ref[300], map_path[300], out_path[300], index_path[400];

static void path_in(char *buf, size_t len, const char *dir, const char *name)
{
    REQUIRE((size_t)snprintf(buf, len, "%s/%s", dir, name) < len);
}

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(size == 0 || fwrite(data, 1, size, f) == size);
    REQUIRE(fclose(f) == 0);
}

/* A canonical model file holding tensors t0 and t0 + 1 (zero data). */
static void write_model(const char *path, size_t t0)
{
    static const uint64_t s0[2] = {4, 2}, s1[1] = {3};
    const sts_tensor_desc t[2] = {{tensor_names[t0], STS_F32, 2, s0},
                                  {tensor_names[t0 + 1], STS_I64, t0 ? 0 : 1, t0 ? NULL : s1}};
    void *hdr = NULL, *zeros;
    size_t len = 0;
    uint64_t begin[2], end[2];
    FILE *f;
    REQUIRE(sts_header_encode(t, 2, NULL, 0, STS_LAYOUT_CANONICAL, 0, &hdr, &len, begin, end,
                              NULL) == STS_OK);
    zeros = calloc(1, 64);
    REQUIRE(zeros && end[0] <= 64 && end[1] <= 64);
    f = fopen(path, "wb");
    REQUIRE(f && fwrite(hdr, 1, len, f) == len);
    REQUIRE(fwrite(zeros, 1, end[0] > end[1] ? end[0] : end[1], f) > 0 && fclose(f) == 0);
    free(zeros);
    sts_free(hdr);
}

static void cleanup(void)
{
    char p[400];
    for (size_t i = 0; i < 2; i++) {
        path_in(p, sizeof p, ref, model_files[i]);
        unlink(p);
    }
    unlink(index_path);
    unlink(map_path);
    unlink(out_path);
    rmdir(ref);
    rmdir(root);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char p[400];
    REQUIRE((size_t)snprintf(root, sizeof root, "%s/fuzz_mapping.XXXXXX", tmp ? tmp : "/tmp") <
            sizeof root);
    REQUIRE(mkdtemp(root) != NULL);
    path_in(ref, sizeof ref, root, "ref");
    path_in(map_path, sizeof map_path, root, "map.json");
    path_in(out_path, sizeof out_path, root, "out.json");
    REQUIRE(mkdir(ref, 0700) == 0);
    path_in(index_path, sizeof index_path, ref, "model.safetensors.index.json");
    for (size_t i = 0; i < 2; i++) {
        path_in(p, sizeof p, ref, model_files[i]);
        write_model(p, 2 * i);
    }
    atexit(cleanup);
}

/* ------------------------------------------------------------------------ */

static void same_mapping(const sts_mapping *a, const sts_mapping *b)
{
    REQUIRE(sts_mapping_count(a) == sts_mapping_count(b));
    for (size_t i = 0; i < sts_mapping_count(a); i++) {
        const char *na = NULL, *nb = NULL;
        unsigned ia = 0, ib = 0;
        REQUIRE(sts_mapping_at(a, i, &na, &ia) == STS_OK && sts_mapping_at(b, i, &nb, &ib) == 0);
        REQUIRE(strcmp(na, nb) == 0 && ia == ib);
    }
}

static void fuzz_mapping_file(const uint8_t *data, size_t size)
{
    sts_mapping *m = NULL, *back = NULL;
    sts_diag d;
    unsigned hi = 0;
    int rc;
    write_file(map_path, data, size);
    rc = sts_mapping_load_json(map_path, &m, &d);
    REQUIRE(rc == STS_OK || rc == STS_E_MAPPING || rc == STS_E_NOMEM);
    if (rc != STS_OK) {
        REQUIRE(m == NULL && d.code == rc && strncmp(d.message, map_path, strlen(map_path)) == 0);
        return;
    }
    for (size_t i = 0; i < sts_mapping_count(m); i++) {
        const char *name = NULL;
        unsigned idx = 0;
        REQUIRE(sts_mapping_at(m, i, &name, &idx) == STS_OK && name && idx >= 1);
        REQUIRE(sts_mapping_get(m, name) == idx);
        hi = idx > hi ? idx : hi;
    }
    REQUIRE(sts_mapping_at(m, sts_mapping_count(m), NULL, NULL) == STS_E_ARG);
    REQUIRE(sts_mapping_file_count(m) == hi);
    REQUIRE(sts_mapping_write_json(m, out_path, &d) == STS_OK);
    REQUIRE(sts_mapping_load_json(out_path, &back, &d) == STS_OK);
    same_mapping(m, back);
    sts_mapping_free(back);
    sts_mapping_free(m);
}

typedef struct seen {
    size_t count;
    int first;
} seen;

static void on_problem(void *ud, const char *file, int code, const char *message)
{
    seen *s = ud;
    REQUIRE(file != NULL && message != NULL && message[0] != '\0');
    REQUIRE(code < 0 && strcmp(sts_errname(code), "UnknownError") != 0);
    if (s->count++ == 0)
        s->first = code;
}

static void fuzz_index_file(const uint8_t *data, size_t size)
{
    sts_mapping *m = NULL;
    sts_diag d;
    seen s = {0, STS_OK};
    size_t nproblems = 99;
    int rc, vrc;
    write_file(index_path, data, size);
    rc = sts_mapping_from_reference(ref, &m, &d);
    REQUIRE(rc == STS_OK || rc == STS_E_INDEX || rc == STS_E_MAPPING || rc == STS_E_NOMEM);
    REQUIRE(rc == STS_OK || (m == NULL && d.code == rc));
    for (size_t i = 0; m && i < sts_mapping_count(m); i++) {
        const char *name = NULL;
        unsigned idx = 0;
        REQUIRE(sts_mapping_at(m, i, &name, &idx) == STS_OK && idx >= 1);
        REQUIRE(idx <= sts_mapping_count(m));
    }
    vrc = sts_verify_path(ref, on_problem, &s, &nproblems);
    REQUIRE(nproblems == s.count && vrc == s.first);
    if (vrc == STS_OK) {
        /* A valid index maps the tensors of the files it names to those files.  (verify
         * does not require it to name every model file of the directory.) */
        REQUIRE(rc == STS_OK && sts_mapping_count(m) <= 4);
        for (size_t i = 0; i < sts_mapping_count(m); i++) {
            const char *name = NULL;
            size_t t = 0;
            REQUIRE(sts_mapping_at(m, i, &name, NULL) == STS_OK);
            while (t < 4 && strcmp(tensor_names[t], name) != 0)
                t++;
            REQUIRE(t < 4);
        }
        for (size_t t = 0; t < 4; t++) {
            unsigned k = sts_mapping_get(m, tensor_names[t]);
            REQUIRE(k == 0 || k == tensor_file[t] || sts_mapping_file_count(m) == 1);
        }
    }
    sts_mapping_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 0;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_index_file(data + 1, size - 1);
    else
        fuzz_mapping_file(data + 1, size - 1);
    return 0;
}
