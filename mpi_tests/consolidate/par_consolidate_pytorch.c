/*
 * par_consolidate_pytorch.c - rank files in PyTorch DCP's exact byte layout
 * (written by consolidate/make_pytorch_shards.py with the Python standard
 * library: Python-spaced DCP_SHARDING_INFO, safetensors' own header layout)
 * consolidated by Q ranks.  The outputs are compared byte for byte with
 * files the script wrote independently of stshard:
 *   - canonical layout: the reference writer's file of the full tensors with
 *     {"format":"pt"}, and the index (json.dumps(indent=2, sort_keys=True));
 *   - pytorch layout with mapping.json: consolidate_safetensors_files's
 *     header (json.dumps, mapping order, no padding) for each output file,
 *     and its index (json.dump(indent=2): weight_map in mapping order, no
 *     final newline).
 * The model has 0-dim, integer and bool tensors and column and 2-D blocks,
 * which PyTorch's own consolidator gets wrong or rejects.
 *
 * Usage: par_consolidate_pytorch FIXTURE_DIR
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_consolidate_gen.h"
#include "test_util.h"

static int me, np;

static void same_file(const char *got_path, const char *want_path)
{
    size_t glen = 0, wlen = 0;
    unsigned char *got = gen_read_file(got_path, &glen), *want = gen_read_file(want_path, &wlen);
    CHECK(want != NULL);
    CHECK(got != NULL && want != NULL && glen == wlen && memcmp(got, want, wlen) == 0);
    if (got && want && (glen != wlen || memcmp(got, want, wlen) != 0))
        fprintf(stderr, "  %s differs from %s (%zu vs %zu bytes)\n", got_path, want_path, glen,
                wlen);
    free(got);
    free(want);
}

static int run(const char *in, const char *out, const sts_consolidate_opts *o)
{
    sts_diag d;
    int rc = sts_consolidate(MPI_COMM_WORLD, in, out, o, NULL, &d);
    if (rc != STS_OK && me == 0)
        fprintf(stderr, "  sts_consolidate: %s: %s\n", sts_errname(rc), d.message);
    return rc;
}

int main(int argc, char **argv)
{
    char in[512], out[512], got[700], want[700], path[600];
    sts_consolidate_opts o;
    sts_mapping *map = NULL;
    sts_diag d;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc < 2) {
        fprintf(stderr, "usage: par_consolidate_pytorch FIXTURE_DIR\n");
        MPI_Finalize();
        return 2;
    }
    snprintf(in, sizeof in, "%s/shards", argv[1]);

    /* Canonical layout: golden bytes of the model file and of the index. */
    snprintf(out, sizeof out, "%s/out_canonical_np%d", argv[1], np);
    if (me == 0)
        gen_rmtree(out);
    MPI_Barrier(MPI_COMM_WORLD);
    sts_consolidate_opts_init(&o);
    o.force = 1;
    o.buffer_size = 96; /* many windows even for this small model */
    CHECK_OK(run(in, out, &o));
    if (me == 0) {
        static const char *files[] = {"model-00001-of-00001.safetensors",
                                      "model.safetensors.index.json"};
        for (int i = 0; i < 2; i++) {
            snprintf(got, sizeof got, "%s/%s", out, files[i]);
            snprintf(want, sizeof want, "%s/expected/canonical/%s", argv[1], files[i]);
            same_file(got, want);
        }
    }

    /* PyTorch layout with the mapping file: golden bytes of both output files. */
    snprintf(path, sizeof path, "%s/mapping.json", argv[1]);
    CHECK_OK(sts_mapping_load_json(path, &map, &d));
    snprintf(out, sizeof out, "%s/out_pytorch_np%d", argv[1], np);
    sts_consolidate_opts_init(&o);
    o.force = 1;
    o.mapping = map;
    o.layout = STS_LAYOUT_PYTORCH;
    CHECK_OK(run(in, out, &o));
    if (me == 0) {
        for (int k = 1; k <= 3; k++) {
            char file[64];
            if (k < 3)
                snprintf(file, sizeof file, "model-%05d-of-00002.safetensors", k);
            else
                snprintf(file, sizeof file, "model.safetensors.index.json");
            snprintf(got, sizeof got, "%s/%s", out, file);
            snprintf(want, sizeof want, "%s/expected/pytorch/%s", argv[1], file);
            same_file(got, want);
        }
    }
    sts_mapping_free(map);
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
