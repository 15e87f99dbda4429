/*
 * unit_mapping.c - the tensor -> file mapping: table behaviour at scale, JSON
 * files (good and bad), the file-index regex, and reference directories with
 * the 1..N fallback numbering.  Files are written under the working directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

static char workdir[64];

static const char *path_of(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", workdir, name);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *read_text(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

static void test_table(void)
{
    enum { N = 200000 };
    sts_mapping *m = NULL;
    const char *name = NULL;
    unsigned idx = 0;
    char key[32];
    int order_ok = 1, get_ok = 1;
    CHECK_OK(sts_mapping_create(&m));
    CHECK(sts_mapping_count(m) == 0 && sts_mapping_file_count(m) == 0);
    CHECK(sts_mapping_get(m, "nothing") == 0);
    CHECK_RC(sts_mapping_set(m, "x", 0), STS_E_ARG);
    CHECK_RC(sts_mapping_set(m, NULL, 1), STS_E_ARG);
    CHECK_RC(sts_mapping_at(m, 0, &name, &idx), STS_E_ARG);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "model.layers.%d.weight", i);
        CHECK_OK(sts_mapping_set(m, key, (unsigned)(i % 7) + 1));
    }
    CHECK(sts_mapping_count(m) == N && sts_mapping_file_count(m) == 7);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "model.layers.%d.weight", i);
        get_ok &= sts_mapping_get(m, key) == (unsigned)(i % 7) + 1;
        order_ok &= sts_mapping_at(m, (size_t)i, &name, &idx) == STS_OK && strcmp(name, key) == 0;
    }
    CHECK(get_ok && order_ok);
    /* A later set replaces the index and keeps the position. */
    CHECK_OK(sts_mapping_set(m, "model.layers.5.weight", 42));
    CHECK(sts_mapping_count(m) == N && sts_mapping_get(m, "model.layers.5.weight") == 42);
    CHECK_OK(sts_mapping_at(m, 5, &name, &idx));
    CHECK(strcmp(name, "model.layers.5.weight") == 0 && idx == 42);
    CHECK(sts_mapping_file_count(m) == 42);
    CHECK(sts_mapping_get(m, "model.layers.200000.weight") == 0);
    sts_mapping_free(m);
    sts_mapping_free(NULL);
}

/* Loads text as a mapping file; returns the code and the message in diag. */
static int load(const char *text, sts_mapping **m, sts_diag *diag)
{
    write_text(path_of("map.json"), text);
    return sts_mapping_load_json(path_of("map.json"), m, diag);
}

static void test_load_json(void)
{
    static const char *const bad[] = {"{\"bad.key\": 0}",    "{\"bad.key\": -1}",
                                      "{\"bad.key\": 1.5}",  "{\"bad.key\": \"1\"}",
                                      "{\"bad.key\": true}", "{\"bad.key\": null}",
                                      "{\"bad.key\": [1]}",  "{\"bad.key\": 4294967296}"};
    sts_mapping *m = NULL;
    sts_diag diag;
    const char *name;
    unsigned idx;
    CHECK_OK(load("{\"b\": 2, \"a\": 1,\n \"c\\\"q\": 3, \"d\": 1e1}", &m, &diag));
    CHECK(sts_mapping_count(m) == 4 && sts_mapping_get(m, "c\"q") == 3);
    CHECK(sts_mapping_get(m, "d") == 10);
    CHECK(sts_mapping_at(m, 0, &name, &idx) == STS_OK && strcmp(name, "b") == 0 && idx == 2);
    sts_mapping_free(m);
    CHECK_OK(load("  {}  ", &m, &diag));
    CHECK(m && sts_mapping_count(m) == 0);
    sts_mapping_free(m);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (sts_mapping *)1;
        CHECK_RC(load(bad[i], &m, &diag), STS_E_MAPPING);
        CHECK(m == NULL && strstr(diag.message, "bad.key") != NULL);
    }
    CHECK_RC(load("[1, 2]", &m, &diag), STS_E_MAPPING);
    CHECK_RC(load("{\"a\": 1,", &m, &diag), STS_E_MAPPING);
    CHECK(strstr(diag.message, "map.json") != NULL);
    CHECK_RC(load("{\"x\": 1, \"x\": 2}", &m, &diag), STS_E_MAPPING);
    CHECK(strstr(diag.message, "twice") != NULL);
    CHECK_RC(sts_mapping_load_json(path_of("absent.json"), &m, &diag), STS_E_NOENT);
    CHECK(strstr(diag.message, "absent.json") != NULL);
}

static void test_write_json(void)
{
    sts_mapping *m = NULL, *back = NULL;
    sts_diag diag;
    CHECK_OK(sts_mapping_create(&m));
    CHECK_OK(sts_mapping_write_json(m, path_of("out.json"), &diag));
    CHECK(strcmp(read_text(path_of("out.json")), "{}\n") == 0);
    CHECK_OK(sts_mapping_set(m, "zeta", 3));
    CHECK_OK(sts_mapping_set(m, "a\"b\\c\n", 1));
    CHECK_OK(sts_mapping_write_json(m, path_of("out.json"), &diag));
    CHECK(strcmp(read_text(path_of("out.json")),
                 "{\n  \"zeta\": 3,\n  \"a\\\"b\\\\c\\n\": 1\n}\n") == 0);
    CHECK_OK(sts_mapping_load_json(path_of("out.json"), &back, &diag));
    CHECK(back && sts_mapping_count(back) == 2 && sts_mapping_get(back, "a\"b\\c\n") == 1);
    CHECK(sts_mapping_write_json(m, path_of("no/such/dir/out.json"), &diag) != STS_OK);
    sts_mapping_free(back);
    sts_mapping_free(m);
}

static void test_regex(void)
{
    static const struct {
        const char *name;
        int ok;
        unsigned k, n;
    } cases[] = {
        {"model-00001-of-00003.safetensors", 1, 1, 3},
        {"model-1-of-2.safetensors", 1, 1, 2},
        {"a-b-0007-of-0010.safetensors", 1, 7, 10},
        {"-1-of-2.safetensors", 1, 1, 2},
        {"model-12-5-of-3.safetensors", 1, 5, 3},
        {"model-100000-of-100000.safetensors", 1, 100000, 100000},
        {"model-00001-of-00003.safetensors.bak", 0, 0, 0},
        {"model00001-of-00003.safetensors", 0, 0, 0},
        {"model-x1-of-2.safetensors", 0, 0, 0},
        {"model-1-of-.safetensors", 0, 0, 0},
        {"model--of-2.safetensors", 0, 0, 0},
        {"model-1-of-2.SAFETENSORS", 0, 0, 0},
        {"model-1-of-2xsafetensors", 0, 0, 0},
        {"model-1-0f-2.safetensors", 0, 0, 0},
        {"model-99999999999-of-2.safetensors", 0, 0, 0},
        {"model.safetensors", 0, 0, 0},
        {".safetensors", 0, 0, 0},
        {"", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned k = 0, n = 0;
        int ok = sts__mapping_parse_file_index(cases[i].name, &k, &n);
        CHECK(ok == cases[i].ok);
        CHECK(!ok || (k == cases[i].k && n == cases[i].n));
        if (ok != cases[i].ok)
            fprintf(stderr, "  regex case '%s'\n", cases[i].name);
    }
}

/* A reference directory holding only an index whose weight_map is the given body. */
static int ref_index(const char *dir, const char *weight_map, sts_mapping **m, sts_diag *diag)
{
    char text[2048], p[300];
    mkdir(path_of(dir), 0755);
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": %s}",
             weight_map);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path_of(dir));
    write_text(p, text);
    sts_mapping_free(*m);
    *m = NULL;
    return sts_mapping_from_reference(path_of(dir), m, diag);
}

static void test_reference_index(void)
{
    sts_mapping *m = NULL;
    sts_diag diag;
    const char *name;
    unsigned idx;
    /* Indices parsed from the names, weight_map order kept. */
    CHECK_OK(ref_index("r1",
                       "{\"w2\": \"model-00002-of-00002.safetensors\", "
                       "\"w1\": \"model-00001-of-00002.safetensors\", "
                       "\"w3\": \"model-00002-of-00002.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_count(m) == 3 && sts_mapping_get(m, "w1") == 1);
    CHECK(sts_mapping_get(m, "w2") == 2 && sts_mapping_get(m, "w3") == 2);
    CHECK(sts_mapping_at(m, 0, &name, &idx) == STS_OK && strcmp(name, "w2") == 0);
    /* Parsed indices win over name order. */
    CHECK_OK(ref_index("r2", "{\"a\": \"z-1-of-2.safetensors\", \"b\": \"a-2-of-2.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_get(m, "a") == 1 && sts_mapping_get(m, "b") == 2);
    /* Indices {1, 3} are not 1..2: files numbered by sorted name. */
    CHECK_OK(ref_index("r3",
                       "{\"a\": \"model-00003-of-00003.safetensors\", "
                       "\"b\": \"model-00001-of-00003.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_get(m, "a") == 2 && sts_mapping_get(m, "b") == 1);
    /* Names without indices. */
    CHECK_OK(ref_index("r4",
                       "{\"x\": \"c.safetensors\", \"y\": \"a.safetensors\", "
                       "\"z\": \"b.safetensors\", \"w\": \"a.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_get(m, "y") == 1 && sts_mapping_get(m, "w") == 1);
    CHECK(sts_mapping_get(m, "z") == 2 && sts_mapping_get(m, "x") == 3);
    CHECK(sts_mapping_file_count(m) == 3);
    /* One name parses, one does not: all by sorted name. */
    CHECK_OK(ref_index("r5",
                       "{\"p\": \"model-00001-of-00002.safetensors\", "
                       "\"q\": \"extra.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_get(m, "q") == 1 && sts_mapping_get(m, "p") == 2);
    /* Two files claiming index 1: by sorted name. */
    CHECK_OK(ref_index("r6", "{\"p\": \"y-1-of-2.safetensors\", \"q\": \"x-1-of-2.safetensors\"}",
                       &m, &diag));
    CHECK(sts_mapping_get(m, "q") == 1 && sts_mapping_get(m, "p") == 2);
    /* An empty weight_map is an empty mapping. */
    CHECK_OK(ref_index("r7", "{}", &m, &diag));
    CHECK(m && sts_mapping_count(m) == 0);
    /* Broken indexes. */
    CHECK_RC(ref_index("r8", "[]", &m, &diag), STS_E_INDEX);
    CHECK(strstr(diag.message, "weight_map") != NULL);
    CHECK_RC(ref_index("r9", "{\"a\": 1}", &m, &diag), STS_E_INDEX);
    CHECK(strstr(diag.message, "\"a\"") != NULL);
    CHECK_RC(ref_index("r10", "{\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}", &m, &diag),
             STS_E_INDEX);
    CHECK_RC(ref_index("r11", "{\"a\": \"x.safetensors\"", &m, &diag), STS_E_INDEX);
    CHECK(m == NULL);
    sts_mapping_free(m);
}

/* Writes a safetensors file of three F32 tensors (header from the codec). */
static void write_model(const char *path, int truncate)
{
    uint64_t s1[] = {2, 2}, s2[] = {3}, begin[3], end[3];
    sts_tensor_desc t[] = {
        {"w.b", STS_F32, 2, s1}, {"w.a", STS_F32, 1, s2}, {"scalar", STS_F32, 0, NULL}};
    void *buf = NULL;
    size_t len = 0;
    sts_diag diag;
    FILE *f;
    static const unsigned char zeros[64];
    CHECK_OK(
        sts_header_encode(t, 3, NULL, 0, STS_LAYOUT_CANONICAL, 0, &buf, &len, begin, end, &diag));
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f && buf) {
        fwrite(buf, 1, len, f);
        uint64_t data = end[0] > end[1] ? end[0] : end[1];
        data = end[2] > data ? end[2] : data;
        fwrite(zeros, 1, (size_t)data - (size_t)truncate, f);
        fclose(f);
    }
    sts_free(buf);
}

static void test_reference_single(void)
{
    sts_mapping *m = NULL;
    sts_diag diag;
    char p[300];
    mkdir(path_of("s1"), 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", path_of("s1"));
    write_model(p, 0);
    CHECK_OK(sts_mapping_from_reference(path_of("s1"), &m, &diag));
    CHECK(m && sts_mapping_count(m) == 3 && sts_mapping_file_count(m) == 1);
    CHECK(sts_mapping_get(m, "w.a") == 1 && sts_mapping_get(m, "scalar") == 1);
    sts_mapping_free(m);
    m = NULL;
    /* A broken model file: its error, naming the file. */
    mkdir(path_of("s2"), 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", path_of("s2"));
    write_model(p, 1);
    CHECK(sts_mapping_from_reference(path_of("s2"), &m, &diag) < 0 && m == NULL);
    CHECK(strstr(diag.message, "model.safetensors") != NULL);
    /* The index wins over model.safetensors when both exist. */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path_of("s1"));
    write_text(p, "{\"weight_map\": {\"only\": \"model-00002-of-00002.safetensors\"}}");
    CHECK_OK(sts_mapping_from_reference(path_of("s1"), &m, &diag));
    CHECK(m && sts_mapping_count(m) == 1 && sts_mapping_get(m, "only") == 1);
    sts_mapping_free(m);
    m = NULL;
    /* Neither file, or no directory at all. */
    mkdir(path_of("s3"), 0755);
    CHECK_RC(sts_mapping_from_reference(path_of("s3"), &m, &diag), STS_E_NOENT);
    CHECK(strstr(diag.message, "neither") != NULL);
    CHECK_RC(sts_mapping_from_reference(path_of("s4"), &m, &diag), STS_E_NOENT);
    CHECK_RC(sts_mapping_from_reference(p, &m, &diag), STS_E_NOENT);
}

int main(void)
{
    snprintf(workdir, sizeof workdir, "unit_mapping.%ld", (long)getpid());
    if (mkdir(workdir, 0755) != 0) {
        perror(workdir);
        return 1;
    }
    test_table();
    test_load_json();
    test_write_json();
    test_regex();
    test_reference_index();
    test_reference_single();
    if (test_failures == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
        CHECK(system(cmd) == 0);
    }
    if (test_failures)
        fprintf(stderr, "unit_mapping: %d failure(s); files kept in %s\n", test_failures, workdir);
    return TEST_EXIT();
}
