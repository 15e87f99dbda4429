/*
 * par_consolidate.c - collective consolidation with Q ranks (the mpiexec
 * size) of P = 1..4 rank files: row, column, 2-D and 3-D blocks, uneven and
 * empty blocks, replicas and identical duplicates, scalars, zero-size
 * tensors and every dtype.  The output must equal the canonical file of the
 * full tensors byte for byte, for several buffer sizes (so tensors are cut
 * into many windows), and hold the right tensors in the other layouts and
 * splits.  Also: existing outputs, force, and OUTDIR == INDIR.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "par_consolidate_gen.h"
#include "test_util.h"

static int me, np;

static void mixed_model(gen_model *m, uint32_t P)
{
    static const sts_dtype small[] = {STS_I8,      STS_U8,          STS_F8_E5M2,     STS_F8_E4M3,
                                      STS_F8_E8M0, STS_F8_E4M3FNUZ, STS_F8_E5M2FNUZ, STS_I16,
                                      STS_U16,     STS_U32,         STS_I64,         STS_U64,
                                      STS_C64,     STS_F64,         STS_I32,         STS_BOOL};
    char name[64];
    gen_init(m, P);
    m->python_spacing = (int)(P % 2);
    gen_split(m, gen_tensor_add(m, "row.f32", STS_F32, 2, (uint64_t[]){13, 5}), GEN_ROW);
    gen_split(m, gen_tensor_add(m, "col.bf16", STS_BF16, 2, (uint64_t[]){6, 11}), GEN_COL);
    gen_split(m, gen_tensor_add(m, "grid.f16", STS_F16, 2, (uint64_t[]){7, 9}), GEN_GRID);
    gen_split(m, gen_tensor_add(m, "cube.i32", STS_I32, 3, (uint64_t[]){5, 4, 6}), GEN_GRID);
    gen_split(m, gen_tensor_add(m, "cube.col", STS_F32, 3, (uint64_t[]){3, 4, 7}), GEN_COL);
    gen_split(m, gen_tensor_add(m, "rep.u8", STS_U8, 1, (uint64_t[]){10}), GEN_REPLICA);
    gen_split(m, gen_tensor_add(m, "one.f64", STS_F64, 2, (uint64_t[]){3, 3}), GEN_ONE);
    gen_split(m, gen_tensor_add(m, "scalar.f32", STS_F32, 0, NULL), GEN_REPLICA);
    gen_split(m, gen_tensor_add(m, "scalar.i64", STS_I64, 0, NULL), GEN_ONE);
    gen_split(m, gen_tensor_add(m, "zero.i16", STS_I16, 2, (uint64_t[]){0, 4}), GEN_ROW);
    gen_split(m, gen_tensor_add(m, "zero.u16", STS_U16, 2, (uint64_t[]){3, 0}), GEN_COL);
    gen_split(m, gen_tensor_add(m, "short.f32", STS_F32, 1, (uint64_t[]){2}), GEN_ROW);
    gen_split(m, gen_tensor_add(m, "f4.rows", STS_F4, 2, (uint64_t[]){5, 6}), GEN_ROW);
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        snprintf(name, sizeof name, "dtype.%s", sts_dtype_name(small[i]));
        gen_split(m, gen_tensor_add(m, name, small[i], 2, (uint64_t[]){P + 2, 3}),
                  i % 2 ? GEN_COL : GEN_ROW);
    }
}

/* Runs sts_consolidate; checks that every rank got the same code. */
static int run(const char *in, const char *out, const sts_consolidate_opts *o,
               sts_consolidate_stats *st)
{
    sts_diag d;
    int rc = sts_consolidate(MPI_COMM_WORLD, in, out, o, st, &d), lo = rc, hi = rc;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
    if (rc != STS_OK && me == 0)
        fprintf(stderr, "  sts_consolidate: %s: %s\n", sts_errname(rc), d.message);
    return rc;
}

static void expect_exact(const gen_model *m, const char *out)
{
    unsigned char *want = NULL, *got;
    size_t wlen = 0, glen = 0;
    char path[512];
    if (me != 0)
        return;
    snprintf(path, sizeof path, "%s/model-00001-of-00001.safetensors", out);
    got = gen_read_file(path, &glen);
    CHECK(gen_expected(m, NULL, &want, &wlen) == 0);
    CHECK(got && glen == wlen && memcmp(got, want, wlen) == 0);
    CHECK(gen_check_dir(m, out, NULL, 0) == 0);
    free(want);
    free(got);
}

static void test_matrix(const char *base)
{
    char in[512], out[512];
    for (uint32_t P = 1; P <= 4; P++) {
        gen_model m;
        sts_consolidate_opts o;
        sts_consolidate_stats st;
        mixed_model(&m, P);
        snprintf(in, sizeof in, "%s/in%u", base, P);
        if (me == 0)
            CHECK(gen_write(&m, in) == 0);
        MPI_Barrier(MPI_COMM_WORLD);
        /* Default options, then buffers so small that every tensor spans windows. */
        static const size_t buffers[] = {0, 64, 200, 4096};
        for (size_t b = 0; b < sizeof buffers / sizeof buffers[0]; b++) {
            sts_consolidate_opts_init(&o);
            o.buffer_size = buffers[b] ? buffers[b] : o.buffer_size;
            snprintf(out, sizeof out, "%s/out%u_%zu", base, P, b);
            CHECK_OK(run(in, out, &o, &st));
            expect_exact(&m, out);
            CHECK(st.tensors == m.nt && st.output_files == 1);
            CHECK(st.input_files <= P && st.input_files >= 1);
        }
        /* The PyTorch layout, a size split and 4096-byte alignment. */
        sts_consolidate_opts_init(&o);
        o.layout = STS_LAYOUT_PYTORCH;
        o.buffer_size = 128;
        snprintf(out, sizeof out, "%s/pyt%u", base, P);
        CHECK_OK(run(in, out, &o, NULL));
        if (me == 0)
            CHECK(gen_check_dir(&m, out, NULL, 0) == 0);
        sts_consolidate_opts_init(&o);
        o.max_file_size = 120;
        o.align = 4096;
        snprintf(out, sizeof out, "%s/split%u", base, P);
        CHECK_OK(run(in, out, &o, &st));
        CHECK(st.output_files > 3);
        if (me == 0) {
            char path[600];
            struct stat sb;
            CHECK(gen_check_dir(&m, out, NULL, 0) == 0);
            snprintf(path, sizeof path, "%s/model-00001-of-%05llu.safetensors", out,
                     (unsigned long long)st.output_files);
            CHECK(stat(path, &sb) == 0 && sb.st_size >= 4096);
        }
        gen_free(&m);
    }
}

/* 40 rank files, column-sharded: more files than the input cache holds at 128 descriptors. */
static void test_many_files(const char *base)
{
    char in[512], out[512];
    gen_model m;
    sts_consolidate_opts o;
    gen_init(&m, 40);
    gen_split(&m, gen_tensor_add(&m, "wide.col", STS_BF16, 2, (uint64_t[]){33, 200}), GEN_COL);
    gen_split(&m, gen_tensor_add(&m, "tall.row", STS_F32, 2, (uint64_t[]){90, 7}), GEN_ROW);
    gen_split(&m, gen_tensor_add(&m, "grid", STS_I16, 2, (uint64_t[]){50, 50}), GEN_GRID);
    snprintf(in, sizeof in, "%s/in40", base);
    snprintf(out, sizeof out, "%s/out40", base);
    if (me == 0)
        CHECK(gen_write(&m, in) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    sts_consolidate_opts_init(&o);
    o.buffer_size = 512;
    CHECK_OK(run(in, out, &o, NULL));
    expect_exact(&m, out);
    gen_free(&m);
}

static int count_model_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "model-", 6) == 0;
    if (d)
        closedir(d);
    return n;
}

static void test_existing(const char *base)
{
    char in[512], out[512];
    gen_model m;
    sts_consolidate_opts o;
    mixed_model(&m, 2);
    snprintf(in, sizeof in, "%s/in2", base);
    snprintf(out, sizeof out, "%s/out2_0", base);
    sts_consolidate_opts_init(&o);
    /* The output exists from the matrix: refused, then replaced with force. */
    CHECK_RC(run(in, out, &o, NULL), STS_E_EXIST);
    expect_exact(&m, out);
    o.force = 1;
    CHECK_OK(run(in, out, &o, NULL));
    expect_exact(&m, out);
    CHECK_RC(run(in, in, &o, NULL), STS_E_USAGE);
    /* Forcing a one-file output over a split one removes the earlier run's extra files. */
    snprintf(out, sizeof out, "%s/split2", base);
    CHECK_OK(run(in, out, &o, NULL));
    if (me == 0) {
        CHECK(count_model_files(out) == 1);
        CHECK(gen_check_dir(&m, out, NULL, 0) == 0);
    }
    snprintf(out, sizeof out, "%s/nothing", base);
    if (me == 0)
        mkdir(out, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_RC(run(out, in, &o, NULL), STS_E_EMPTY_INPUT);
    gen_free(&m);
}

int main(int argc, char **argv)
{
    char base[256];
    struct rlimit rl;
    /* Few descriptors, so the input cache (a quarter of them) must evict. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 128) {
        rl.rlim_cur = 128;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    /* A variant run (argv[1]) works in a directory of its own: ctest may run both at once. */
    snprintf(base, sizeof base, "par_consolidate%s%s_np%d", argc > 1 ? "_" : "",
             argc > 1 ? argv[1] : "", np);
    if (me == 0) {
        gen_rmtree(base);
        mkdir(base, 0777);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    test_matrix(base);
    test_many_files(base);
    test_existing(base);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0 && test_failures == 0)
        gen_rmtree(base);
    if (me == 0 && test_failures)
        fprintf(stderr, "par_consolidate: %d failure(s)\n", test_failures);
    MPI_Finalize();
    return TEST_EXIT();
}
