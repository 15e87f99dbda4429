/*
 * par_consolidate_errors.c - invalid inputs: a gap, an overlap, a dtype
 * mismatch between blocks, a truncated rank file, a rank file without DCP
 * metadata, saved_offsets of the wrong length, a mapping name no file has,
 * a tensor the mapping lacks (and the same dropped on request), an output
 * path that is a file.  Every rank must return the same code, the code must
 * map to the expected exit status, and no file may appear under a final name
 * (nor a temporary be left behind).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "par_consolidate_gen.h"
#include "test_util.h"

static int me, np;
static char base[256];

/* Counts the entries of dir other than "." and "..". */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Consolidates in -> out and expects code (exit status 1 unless stated) everywhere. */
static void expect(const char *label, const char *in, const sts_consolidate_opts *o, int code,
                   int status, const char *needle)
{
    char out[512];
    sts_diag d;
    int rc, lo, hi;
    snprintf(out, sizeof out, "%s/out_%s", base, label);
    rc = sts_consolidate(MPI_COMM_WORLD, in, out, o, NULL, &d);
    lo = hi = rc;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
    CHECK_RC(rc, code);
    CHECK(sts_exit_status(rc) == status);
    if (needle && !strstr(d.message, needle)) {
        CHECK(strstr(d.message, needle) != NULL);
        if (me == 0)
            fprintf(stderr, "  %s: message was: %s\n", label, d.message);
    }
    if (me == 0 && code != STS_E_EXIST)
        CHECK(entries(out) == 0); /* nothing final, nothing temporary */
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A model of three tensors over 3 files; `how` breaks it. */
static void make_input(const char *label, int how, char *in, size_t len)
{
    gen_model m;
    size_t t;
    snprintf(in, len, "%s/in_%s", base, label);
    gen_init(&m, 3);
    m.python_spacing = 1;
    gen_split(&m, gen_tensor_add(&m, "a.row", STS_F32, 2, (uint64_t[]){9, 4}), GEN_ROW);
    gen_split(&m, gen_tensor_add(&m, "b.col", STS_BF16, 2, (uint64_t[]){4, 9}), GEN_COL);
    t = gen_tensor_add(&m, "c.grid", STS_I32, 2, (uint64_t[]){4, 4});
    if (how == 1) { /* gap: the lower-right quarter is missing */
        gen_block_add(&m, t, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
        gen_block_add(&m, t, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 2});
    } else if (how == 2) { /* overlap: rows 1..2 twice */
        gen_block_add(&m, t, 0, (uint64_t[]){0, 0}, (uint64_t[]){3, 4});
        gen_block_add(&m, t, 2, (uint64_t[]){1, 0}, (uint64_t[]){3, 4});
    } else if (how == 3) { /* dtype mismatch: the same name as F16 in another file */
        size_t u = gen_tensor_add(&m, "c.grid", STS_F16, 2, (uint64_t[]){4, 4});
        gen_block_add(&m, t, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
        gen_block_add(&m, u, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 4});
    } else {
        gen_split(&m, t, GEN_GRID);
    }
    if (me == 0)
        CHECK(gen_write(&m, in) == 0);
    gen_free(&m);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Writes a raw safetensors file: the 8-byte prefix, json, then n zero bytes. */
static void write_raw(const char *path, const char *json, size_t n)
{
    uint64_t len = strlen(json);
    unsigned char *zeros = calloc(n + 1, 1);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fwrite(&len, 8, 1, f);
    fwrite(json, 1, len, f);
    fwrite(zeros, 1, n, f);
    fclose(f);
    free(zeros);
}

static void test_inputs(void)
{
    char in[512], path[600];
    sts_consolidate_opts o;
    sts_consolidate_opts_init(&o);
    make_input("gap", 1, in, sizeof in);
    expect("gap", in, &o, STS_E_COVERAGE_GAP, 1, "c.grid");
    make_input("overlap", 2, in, sizeof in);
    expect("overlap", in, &o, STS_E_COVERAGE_OVERLAP, 1, "shard-00003-model-00001-of-00001");
    make_input("dtype", 3, in, sizeof in);
    expect("dtype", in, &o, STS_E_DTYPE_MISMATCH, 1, "F16 in shard-00002");
    make_input("truncated", 0, in, sizeof in);
    if (me == 0) {
        snprintf(path, sizeof path, "%s/shard-00002-model-00001-of-00001.safetensors", in);
        struct stat sb;
        CHECK(stat(path, &sb) == 0 && truncate(path, sb.st_size - 3) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect("truncated", in, &o, STS_E_METADATA_INCOMPLETE_BUFFER, 1, "shard-00002");
    make_input("nodcp", 0, in, sizeof in);
    if (me == 0) {
        snprintf(path, sizeof path, "%s/shard-00004-model-00001-of-00001.safetensors", in);
        write_raw(path,
                  "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]}}",
                  8);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect("nodcp", in, &o, STS_E_SHARDING_INFO, 1, "shard-00004");
    make_input("offsets", 0, in, sizeof in);
    if (me == 0) {
        snprintf(path, sizeof path, "%s/shard-00004-model-00001-of-00001.safetensors", in);
        write_raw(path,
                  "{\"__metadata__\":{\"DCP_SHARDING_INFO\":\"{\\\"w\\\": {\\\"saved_offsets\\\": "
                  "[0]}}\",\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                  "\"data_offsets\":[0,16]}}",
                  16);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect("offsets", in, &o, STS_E_SHARDING_INFO, 1, "shard-00004");
}

static void test_mapping(void)
{
    char in[512];
    sts_consolidate_opts o;
    sts_mapping *m = NULL;
    sts_consolidate_opts_init(&o);
    make_input("map", 0, in, sizeof in);
    CHECK_OK(sts_mapping_create(&m));
    CHECK_OK(sts_mapping_set(m, "a.row", 1));
    CHECK_OK(sts_mapping_set(m, "b.col", 2));
    o.mapping = m;
    /* c.grid is missing from the mapping. */
    expect("unmapped", in, &o, STS_E_MAPPING, 1, "'c.grid'");
    /* A name no input file has. */
    CHECK_OK(sts_mapping_set(m, "c.grid", 2));
    CHECK_OK(sts_mapping_set(m, "ghost.weight", 1));
    expect("ghost", in, &o, STS_E_MAPPING, 1, "'ghost.weight'");
    sts_mapping_free(m);
    /* Dropping on request succeeds and leaves c.grid out. */
    CHECK_OK(sts_mapping_create(&m));
    CHECK_OK(sts_mapping_set(m, "b.col", 1));
    CHECK_OK(sts_mapping_set(m, "a.row", 1));
    o.mapping = m;
    o.drop_unmapped = 1;
    {
        char out[512];
        sts_consolidate_stats st;
        snprintf(out, sizeof out, "%s/out_dropped", base);
        CHECK_OK(sts_consolidate(MPI_COMM_WORLD, in, out, &o, &st, NULL));
        CHECK(st.tensors == 2 && st.output_files == 1);
    }
    sts_mapping_free(m);
}

/*
 * Many broken tensors, whose owners (meta.c) are spread over the ranks: the
 * error reported must be the one first in input order, as one rank planning
 * everything would report it, whatever the rank count.  t00 (the first entry
 * of the first file) has a gap; t01 a dtype clash; t02.. alternate.
 */
static void test_first_error(void)
{
    char in[512], name[16];
    sts_consolidate_opts o;
    gen_model m;
    sts_consolidate_opts_init(&o);
    snprintf(in, sizeof in, "%s/in_first", base);
    gen_init(&m, 2);
    m.python_spacing = 1;
    for (int i = 0; i < 40; i++) {
        size_t t;
        snprintf(name, sizeof name, "t%02d", i);
        t = gen_tensor_add(&m, name, STS_F32, 2, (uint64_t[]){4, 4});
        gen_block_add(&m, t, 0, (uint64_t[]){0, 0}, (uint64_t[]){2, 4});
        if (i % 2 == 0) { /* row 2 missing */
            gen_block_add(&m, t, 1, (uint64_t[]){3, 0}, (uint64_t[]){1, 4});
        } else {
            size_t u = gen_tensor_add(&m, name, STS_F16, 2, (uint64_t[]){4, 4});
            gen_block_add(&m, u, 1, (uint64_t[]){2, 0}, (uint64_t[]){2, 4});
        }
    }
    if (me == 0)
        CHECK(gen_write(&m, in) == 0);
    gen_free(&m);
    MPI_Barrier(MPI_COMM_WORLD);
    expect("first", in, &o, STS_E_COVERAGE_GAP, 1, "tensor 't00'");
}

static void test_output_path(void)
{
    char in[512], path[600];
    sts_consolidate_opts o;
    sts_consolidate_opts_init(&o);
    make_input("outfile", 0, in, sizeof in);
    snprintf(path, sizeof path, "%s/out_notadir", base);
    if (me == 0)
        write_raw(path, "{}", 0);
    MPI_Barrier(MPI_COMM_WORLD);
    expect("notadir", in, &o, STS_E_EXIST, 3, "not a directory");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    snprintf(base, sizeof base, "par_consolidate_errors_np%d", np);
    if (me == 0) {
        gen_rmtree(base);
        mkdir(base, 0777);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    test_inputs();
    test_mapping();
    test_first_error();
    test_output_path();
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0 && test_failures == 0)
        gen_rmtree(base);
    MPI_Finalize();
    return TEST_EXIT();
}
