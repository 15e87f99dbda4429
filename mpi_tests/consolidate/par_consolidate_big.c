/*
 * par_consolidate_big.c - sizes beyond the small matrix.
 *
 *   par_consolidate_big huge DIR   a U8 tensor of 4100 MiB ([4100, 1 MiB]),
 *                                  column-sharded over 2 rank files of 2050
 *                                  MiB, after a small tensor: input and
 *                                  output offsets pass 2^31 and 2^32.  The
 *                                  output is sample-checked (64 KiB at each
 *                                  end plus 100,000 spread-out bytes).
 *   par_consolidate_big many DIR   100,000 small tensors of mixed dtypes
 *                                  over 3 rank files (row-sharded, some
 *                                  replicated), checked byte for byte.
 *
 * DIR (e.g. /dev/shm) holds the files, removed at the end.
 *
 * For scripts/bench-consolidate.sh it also only generates rank files (run it
 * with 2 ranks; each writes nothing, rank 0 writes every file):
 *   par_consolidate_big gen-mixed DIR   2 GiB: row-sharded F32, column-sharded
 *                                       BF16 and F32, replicated norms; 2 files
 *   par_consolidate_big gen-thin DIR    one [1048576, 128] BF16 tensor (256 MiB)
 *                                       sharded by column over 2 files
 *   par_consolidate_big gen-8g DIR      the mixed model with 4x the layers
 *   par_consolidate_big run IN OUT [BUFFER]   consolidates (force) and prints the stats
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "par_consolidate_gen.h"
#include "test_util.h"

static int me, np;

static void huge_model(gen_model *m)
{
    gen_init(m, 2);
    gen_split(m, gen_tensor_add(m, "a.small", STS_F32, 1, (uint64_t[]){1000}), GEN_ROW);
    gen_split(m, gen_tensor_add(m, "big", STS_U8, 2, (uint64_t[]){4100, 1 << 20}), GEN_COL);
}

static void many_model(gen_model *m)
{
    static const sts_dtype dts[] = {STS_F32, STS_BF16, STS_I64, STS_U8, STS_F16, STS_BOOL};
    char name[64];
    gen_init(m, 3);
    m->python_spacing = 1;
    for (int i = 0; i < 100000; i++) {
        size_t t;
        snprintf(name, sizeof name, "model.layers.%d.p%d", i / 10, i % 10);
        t = gen_tensor_add(m, name, dts[i % 6], 2, (uint64_t[]){(uint64_t)(i % 5) + 1, 3});
        gen_split(m, t, i % 7 == 0 ? GEN_ONE : GEN_ROW);
    }
}

/* layers x (F32 row [4096,4096], BF16 col [8192,4096], F32 col [2048,4096], F32 norm). */
static void mixed_model(gen_model *m, int layers)
{
    char name[96];
    gen_init(m, 2);
    m->python_spacing = 1;
    gen_split(
        m, gen_tensor_add(m, "model.embed_tokens.weight", STS_BF16, 2, (uint64_t[]){32000, 2048}),
        GEN_ROW);
    for (int i = 0; i < layers; i++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.qkv.weight", i);
        gen_split(m, gen_tensor_add(m, name, STS_F32, 2, (uint64_t[]){4096, 4096}), GEN_ROW);
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", i);
        gen_split(m, gen_tensor_add(m, name, STS_BF16, 2, (uint64_t[]){8192, 4096}), GEN_COL);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", i);
        gen_split(m, gen_tensor_add(m, name, STS_F32, 2, (uint64_t[]){2048, 4096}), GEN_COL);
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", i);
        gen_split(m, gen_tensor_add(m, name, STS_F32, 1, (uint64_t[]){4096}), GEN_ONE);
    }
}

static int generate(const char *mode, const char *dir)
{
    gen_model m;
    int rc = 0;
    if (strcmp(mode, "gen-mixed") == 0) {
        mixed_model(&m, 12);
    } else if (strcmp(mode, "gen-8g") == 0) {
        mixed_model(&m, 50);
    } else {
        gen_init(&m, 2);
        gen_split(&m, gen_tensor_add(&m, "thin", STS_BF16, 2, (uint64_t[]){1048576, 128}), GEN_COL);
    }
    if (me == 0) {
        gen_rmtree(dir);
        rc = gen_write(&m, dir);
    }
    gen_free(&m);
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return rc;
}

static int run_only(const char *in, const char *out, const char *buffer)
{
    sts_consolidate_opts o;
    sts_consolidate_stats st;
    sts_diag d;
    int rc;
    sts_consolidate_opts_init(&o);
    o.force = 1;
    if (buffer)
        o.buffer_size = (size_t)strtoull(buffer, NULL, 10);
    rc = sts_consolidate(MPI_COMM_WORLD, in, out, &o, &st, &d);
    if (me == 0 && rc == STS_OK)
        printf("%llu bytes in %.3f s: %.2f GiB/s\n", (unsigned long long)st.bytes_total, st.seconds,
               (double)st.bytes_total / st.seconds / (1 << 30));
    else if (me == 0)
        printf("%s: %s\n", sts_errname(rc), d.message);
    return rc;
}

int main(int argc, char **argv)
{
    char in[512], out[512];
    gen_model m;
    sts_consolidate_opts o;
    sts_consolidate_stats st;
    sts_diag d;
    int huge, rc;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc >= 4 && strcmp(argv[1], "run") == 0) {
        rc = run_only(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
        MPI_Finalize();
        return rc ? 1 : 0;
    }
    if (argc == 3 && strncmp(argv[1], "gen-", 4) == 0) {
        rc = generate(argv[1], argv[2]);
        MPI_Finalize();
        return rc ? 1 : 0;
    }
    if (argc < 3 || (strcmp(argv[1], "huge") && strcmp(argv[1], "many"))) {
        fprintf(stderr, "usage: par_consolidate_big huge|many|gen-mixed|gen-thin|gen-8g DIR\n");
        MPI_Finalize();
        return 2;
    }
    huge = strcmp(argv[1], "huge") == 0;
    if (huge) {
        /* Input and output (2 x 4.1 GiB) live there at once, plus a margin: skip (77) without. */
        struct statvfs vfs;
        int skip = statvfs(argv[2], &vfs) != 0 ||
                   (double)vfs.f_bavail * (double)vfs.f_frsize < 9.5 * 1073741824.0;
        MPI_Bcast(&skip, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (skip) {
            if (me == 0)
                printf("par_consolidate_big: less than 9.5 GiB free in %s, skipped\n", argv[2]);
            MPI_Finalize();
            return 77;
        }
    }
    snprintf(in, sizeof in, "%s/stshard_cons_%s_np%d_in", argv[2], argv[1], np);
    snprintf(out, sizeof out, "%s/stshard_cons_%s_np%d_out", argv[2], argv[1], np);
    if (huge)
        huge_model(&m);
    else
        many_model(&m);
    if (me == 0) {
        gen_rmtree(in);
        gen_rmtree(out);
        CHECK(gen_write(&m, in) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sts_consolidate_opts_init(&o);
    rc = sts_consolidate(MPI_COMM_WORLD, in, out, &o, &st, &d);
    CHECK_OK(rc);
    if (rc != STS_OK && me == 0)
        fprintf(stderr, "  %s\n", d.message);
    CHECK(st.tensors == m.nt && st.output_files == 1);
    if (me == 0)
        printf("consolidated %llu tensors, %llu bytes in %.2f s\n", (unsigned long long)st.tensors,
               (unsigned long long)st.bytes_total, st.seconds);
    if (me == 0) {
        /* Remove the input first: the check then runs with half the space in use. */
        gen_rmtree(in);
        CHECK(gen_check_dir(&m, out, NULL, huge ? 100000 : 0) == 0);
        if (!huge) {
            unsigned char *want = NULL, *got;
            size_t wlen = 0, glen = 0;
            char path[600];
            snprintf(path, sizeof path, "%s/model-00001-of-00001.safetensors", out);
            got = gen_read_file(path, &glen);
            CHECK(gen_expected(&m, NULL, &want, &wlen) == 0);
            CHECK(got && glen == wlen && memcmp(got, want, wlen) == 0);
            free(got);
            free(want);
        }
        gen_rmtree(out);
    }
    gen_free(&m);
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
