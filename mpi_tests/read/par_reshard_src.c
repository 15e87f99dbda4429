/*
 * par_reshard_src.c - source checkpoints of the resharding tests, made from
 * the HDF5 reference tensors:
 *
 *   par_reshard_src FIXTURES.h5 OUTDIR
 *       (any rank count N) N rank files written by the sharded writer, each
 *       tensor split as its "split" attribute says: rows, columns, a 2-D
 *       grid, replicated on every rank, or held by the first or last rank.
 *   par_reshard_src FIXTURES.h5 OUTDIR --consolidated
 *       (one rank) OUTDIR/cons: model-0000K-of-00002.safetensors and
 *       model.safetensors.index.json; OUTDIR/single/model.safetensors.
 */
#include <sys/stat.h>

#include "model.h"
#include "par_reshard_util.h"
#include "test_util.h"

static rf_set S;

/* The block of rank me of np for tensor t under its split; 0 when it holds none. */
static int source_block(const rf_tensor *t, int me, int np, uint64_t *off, uint64_t *shape)
{
    model_tensor mt;
    model_strategy st = MODEL_ROWS;
    int repl = 0;
    memset(&mt, 0, sizeof mt);
    mt.dtype = t->dtype;
    mt.ndim = t->ndim;
    memcpy(mt.shape, t->shape, sizeof mt.shape);
    for (uint32_t d = 0; d < t->ndim; d++) {
        off[d] = 0;
        shape[d] = t->shape[d];
    }
    if (strcmp(t->split, "replicated") == 0)
        return 1;
    if (strcmp(t->split, "owner0") == 0)
        return me == 0;
    if (strcmp(t->split, "ownerlast") == 0)
        return me == np - 1;
    if (strcmp(t->split, "col") == 0)
        st = MODEL_COLS;
    else if (strcmp(t->split, "grid") == 0)
        st = MODEL_MESH2D;
    return model_local_block(&mt, st, me, np, off, shape, &repl);
}

static int write_sharded(MPI_Comm comm, const char *dir)
{
    int me, np, rc;
    sts_writer *w = NULL;
    sts_save_opts o;
    sts_block b[RF_MAX_TENSORS];
    uint64_t dims[RF_MAX_TENSORS][8];
    void *data[RF_MAX_TENSORS] = {0};
    size_t n = 0;
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &np);
    sts_save_opts_init(&o);
    o.force = 1;
    for (size_t i = 0; i < S.n; i++) {
        const rf_tensor *t = &S.t[i];
        uint64_t *off = dims[n], *shape = dims[n] + 4, numel = 1, bytes = 0;
        if (!source_block(t, me, np, off, shape))
            continue;
        for (uint32_t d = 0; d < t->ndim; d++)
            numel *= shape[d];
        sts_dtype_nbytes(t->dtype, numel, &bytes);
        data[n] = malloc(bytes + 1);
        CHECK(rf_read(&S, t, off, shape, data[n]) == 0);
        b[n] = (sts_block){t->name, t->dtype, t->ndim, t->shape, off, shape, data[n]};
        n++;
    }
    rc = sts_writer_create(comm, dir, &o, &w);
    CHECK_OK(rc);
    for (size_t i = 0; rc == STS_OK && i < n; i++)
        CHECK_OK(sts_writer_add(w, &b[i]));
    if (rc == STS_OK) {
        rc = sts_writer_commit(w, NULL);
        CHECK_OK(rc);
        if (rc != STS_OK)
            fprintf(stderr, "commit: %s\n", sts_writer_errmsg(w));
    }
    sts_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    return rc;
}

/* Writes whole tensors idx[0..n) as one plain safetensors file. */
static int write_plain(const char *path, const size_t *idx, size_t n)
{
    sts_tensor_desc desc[RF_MAX_TENSORS];
    uint64_t begin[RF_MAX_TENSORS], end[RF_MAX_TENSORS];
    sts_meta_entry meta = {"format", "pt"};
    void *hdr = NULL;
    size_t hlen = 0;
    int rc = -1;
    FILE *f = NULL;
    for (size_t i = 0; i < n; i++)
        desc[i] = (sts_tensor_desc){S.t[idx[i]].name, S.t[idx[i]].dtype, S.t[idx[i]].ndim,
                                    S.t[idx[i]].shape};
    if (sts_header_encode(desc, n, &meta, 1, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end,
                          NULL) != STS_OK)
        return -1;
    f = fopen(path, "wb");
    if (!f || fwrite(hdr, 1, hlen, f) != hlen)
        goto done;
    for (size_t i = 0; i < n; i++) {
        uint64_t zero[4] = {0, 0, 0, 0}, len = end[i] - begin[i];
        unsigned char *buf = malloc(len + 1);
        int ok = rf_read(&S, &S.t[idx[i]], zero, S.t[idx[i]].shape, buf) == 0 &&
                 fseek(f, (long)(hlen + begin[i]), SEEK_SET) == 0 && fwrite(buf, 1, len, f) == len;
        free(buf);
        if (!ok)
            goto done;
    }
    rc = 0;
done:
    if (f && fclose(f) != 0)
        rc = -1;
    sts_free(hdr);
    return rc;
}

/* A JSON string: quotes, backslashes and control characters escaped; UTF-8 kept. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static int write_consolidated(const char *dir)
{
    size_t odd[RF_MAX_TENSORS], even[RF_MAX_TENSORS], all[RF_MAX_TENSORS], no = 0, ne = 0;
    char p[512];
    FILE *f;
    int bad = 0;
    for (size_t i = 0; i < S.n; i++) {
        all[i] = i;
        if (i % 2)
            odd[no++] = i;
        else
            even[ne++] = i;
    }
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/single", dir);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/single/model.safetensors", dir);
    bad |= write_plain(p, all, S.n);
    snprintf(p, sizeof p, "%s/cons", dir);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/cons/model-00001-of-00002.safetensors", dir);
    bad |= write_plain(p, even, ne);
    snprintf(p, sizeof p, "%s/cons/model-00002-of-00002.safetensors", dir);
    bad |= write_plain(p, odd, no);
    snprintf(p, sizeof p, "%s/cons/model.safetensors.index.json", dir);
    f = fopen(p, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {\n");
    for (size_t i = 0; i < S.n; i++) {
        fprintf(f, "    ");
        json_str(f, S.t[i].name);
        fprintf(f, ": \"model-0000%d-of-00002.safetensors\"%s\n", i % 2 ? 2 : 1,
                i + 1 < S.n ? "," : "");
    }
    fprintf(f, "  }\n}\n");
    return (fclose(f) != 0 || bad) ? -1 : 0;
}

int main(int argc, char **argv)
{
    MPI_Comm comm = MPI_COMM_WORLD;
    int me;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(comm, &me);
    S.file = -1;
    if (argc < 3 || rf_open(argv[1], &S) != 0) {
        fprintf(stderr, "usage: par_reshard_src FIXTURES.h5 OUTDIR [--consolidated]\n");
        test_failures++;
    } else if (argc > 3 && strcmp(argv[3], "--consolidated") == 0) {
        if (me == 0)
            CHECK(write_consolidated(argv[2]) == 0);
    } else {
        write_sharded(comm, argv[2]);
    }
    rf_close(&S);
    TEST_AGREE(comm);
    MPI_Finalize();
    return TEST_EXIT();
}
