/*
 * par_consolidate_h5.c - save with P ranks, consolidate with Q ranks, for
 * every P and Q from 1 to the mpiexec size, against the HDF5 reference
 * tensors of gen_fixtures.c (every dtype, scalars, an empty tensor, row /
 * column / 2-D / 4-D grid splits, replicated and single-owner tensors,
 * non-ASCII names).
 *
 * For each P the first P ranks read their hyperslab of every dataset and
 * save it with the writer API (sts_writer_*).  For each Q the first Q ranks
 * consolidate those rank files (layouts and buffer sizes vary with Q), and
 * rank 0 compares every tensor of the output with the whole HDF5 dataset,
 * byte for byte, and runs sts_verify_path on the output directory.
 *
 * Usage: par_consolidate_h5 FIXTURES.h5 WORKDIR
 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "par_consolidate_gen.h"
#include "test_util.h"

#define MAXT 64

typedef struct tensor {
    char name[128];
    char split[16];
    sts_dtype dt;
    uint32_t ndim;
    uint64_t shape[4];
} tensor;

static tensor T[MAXT];
static size_t NT;
static int me, world;

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *ud)
{
    (void)g, (void)info, (void)ud;
    if (NT < MAXT)
        snprintf(T[NT++].name, sizeof T[0].name, "%s", name);
    return 0;
}

static void attr(hid_t ds, const char *key, char *out, size_t len)
{
    hid_t a = H5Aopen(ds, key, H5P_DEFAULT), t = H5Aget_type(a);
    char *tmp = calloc(H5Tget_size(t) + 1, 1);
    CHECK(a >= 0 && H5Aread(a, t, tmp) >= 0);
    snprintf(out, len, "%s", tmp);
    free(tmp);
    H5Tclose(t);
    H5Aclose(a);
}

static void load(hid_t file)
{
    char dt[32];
    CHECK(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, NULL) >= 0);
    for (size_t i = 0; i < NT; i++) {
        hid_t ds = H5Dopen2(file, T[i].name, H5P_DEFAULT), sp = H5Dget_space(ds);
        hsize_t dims[4] = {0};
        int nd = H5Sget_simple_extent_ndims(sp);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        T[i].ndim = (uint32_t)(nd > 0 ? nd : 0);
        for (int k = 0; k < nd; k++)
            T[i].shape[k] = dims[k];
        attr(ds, "dtype", dt, sizeof dt);
        attr(ds, "split", T[i].split, sizeof T[i].split);
        CHECK_OK(sts_dtype_from_name(dt, strlen(dt), &T[i].dt));
        H5Sclose(sp);
        H5Dclose(ds);
    }
}

/* Reads the hyperslab (off, shape) of dataset t as stored bytes; NULL shape: all of it. */
static unsigned char *read_slab(hid_t file, const tensor *t, const uint64_t *off,
                                const uint64_t *shape, uint64_t *nbytes)
{
    hid_t ds = H5Dopen2(file, t->name, H5P_DEFAULT), ft = H5Dget_type(ds);
    hsize_t start[4], count[4];
    uint64_t n = 1;
    unsigned char *buf;
    for (uint32_t k = 0; k < t->ndim; k++) {
        start[k] = off ? off[k] : 0;
        count[k] = shape ? shape[k] : t->shape[k];
        n *= count[k];
    }
    CHECK_OK(sts_dtype_nbytes(t->dt, n, nbytes));
    buf = malloc(*nbytes + 1);
    if (t->ndim == 0) {
        CHECK(H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    } else if (n > 0) {
        hid_t fs = H5Dget_space(ds), ms = H5Screate_simple((int)t->ndim, count, NULL);
        CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
        CHECK(H5Dread(ds, ft, ms, fs, H5P_DEFAULT, buf) >= 0); /* stored bytes, unconverted */
        H5Sclose(ms);
        H5Sclose(fs);
    }
    H5Tclose(ft);
    H5Dclose(ds);
    return buf;
}

static void split1(uint64_t len, int n, int i, uint64_t *off, uint64_t *size)
{
    uint64_t base = len / (uint64_t)n, rem = len % (uint64_t)n, u = (uint64_t)i;
    *size = base + (u < rem);
    *off = u * base + (u < rem ? u : rem);
}

/* Rank r's block of t when P ranks save; returns 0 when r holds nothing. */
static int part(const tensor *t, int r, int P, uint64_t *off, uint64_t *shape)
{
    int rows = 1;
    for (uint32_t k = 0; k < t->ndim; k++) {
        off[k] = 0;
        shape[k] = t->shape[k];
    }
    for (int i = 1; i * i <= P; i++)
        if (P % i == 0)
            rows = i;
    if (!strcmp(t->split, "row") || (!strcmp(t->split, "col") && t->ndim == 1))
        split1(t->shape[0], P, r, &off[0], &shape[0]);
    else if (!strcmp(t->split, "col"))
        split1(t->shape[1], P, r, &off[1], &shape[1]);
    else if (!strcmp(t->split, "grid")) {
        split1(t->shape[0], rows, r / (P / rows), &off[0], &shape[0]);
        split1(t->shape[1], P / rows, r % (P / rows), &off[1], &shape[1]);
    } else if (!strcmp(t->split, "owner0"))
        return r == 0;
    else if (!strcmp(t->split, "ownerlast"))
        return r == P - 1;
    return 1;
}

static void save(hid_t file, MPI_Comm comm, int P, const char *dir)
{
    sts_writer *w = NULL;
    sts_save_stats st;
    uint64_t off[MAXT][4], shape[MAXT][4];
    unsigned char *data[MAXT] = {0};
    CHECK_OK(sts_writer_create(comm, dir, NULL, &w));
    for (size_t i = 0; i < NT && w; i++) {
        sts_block b;
        uint64_t n;
        if (!part(&T[i], me, P, off[i], shape[i]))
            continue;
        data[i] = read_slab(file, &T[i], off[i], shape[i], &n);
        b.name = T[i].name;
        b.dtype = T[i].dt;
        b.ndim = T[i].ndim;
        b.global_shape = T[i].shape;
        b.offsets = off[i];
        b.shape = shape[i];
        b.data = data[i];
        CHECK_OK(sts_writer_add(w, &b));
    }
    CHECK_OK(sts_writer_commit(w, &st));
    sts_writer_free(w);
    for (size_t i = 0; i < NT; i++)
        free(data[i]);
}

/* Rank 0: every tensor of out equals its dataset, and the directory verifies. */
static void compare(hid_t file, const char *out)
{
    char path[700];
    sts_header *h = NULL;
    uint64_t start = 0;
    size_t nprob = 0;
    snprintf(path, sizeof path, "%s/model-00001-of-00001.safetensors", out);
    CHECK_OK(sts_header_read_file(path, &h, &start, NULL));
    if (!h)
        return;
    CHECK(sts_header_count(h) == NT);
    for (size_t i = 0; i < NT; i++) {
        long k = sts_header_find(h, T[i].name, strlen(T[i].name));
        const sts_tensor_info *ti = k >= 0 ? sts_header_tensor(h, (size_t)k) : NULL;
        uint64_t n = 0;
        unsigned char *want, *got;
        CHECK(ti != NULL);
        if (!ti)
            continue;
        CHECK(ti->dtype == T[i].dt && ti->ndim == T[i].ndim);
        CHECK(memcmp(ti->shape, T[i].shape, T[i].ndim * sizeof(uint64_t)) == 0);
        want = read_slab(file, &T[i], NULL, NULL, &n);
        got = malloc(n + 1);
        CHECK(ti->end - ti->begin == n);
        if (ti->end - ti->begin == n && n > 0) {
            FILE *f = fopen(path, "rb");
            CHECK(f && fseek(f, (long)(start + ti->begin), SEEK_SET) == 0 &&
                  fread(got, 1, n, f) == n && memcmp(got, want, n) == 0);
            if (f)
                fclose(f);
        }
        free(want);
        free(got);
    }
    sts_header_free(h);
    CHECK_OK(sts_verify_path(out, NULL, NULL, &nprob));
    CHECK(nprob == 0);
}

static void consolidate(hid_t file, MPI_Comm comm, int P, int Q, const char *in, const char *base)
{
    char out[600];
    sts_consolidate_opts o;
    sts_diag d;
    int rc;
    snprintf(out, sizeof out, "%s/out_p%d_q%d", base, P, Q);
    sts_consolidate_opts_init(&o);
    o.force = 1;
    o.buffer_size = Q % 2 ? 256 : 4096;
    o.layout = Q == 3 ? STS_LAYOUT_PYTORCH : STS_LAYOUT_CANONICAL;
    o.align = Q == 4 ? 4096 : 0;
    rc = sts_consolidate(comm, in, out, &o, NULL, &d);
    CHECK_OK(rc);
    if (rc != STS_OK)
        fprintf(stderr, "  P=%d Q=%d: %s\n", P, Q, d.message);
    if (me == 0 && rc == STS_OK)
        compare(file, out);
    if (me == 0 && rc == STS_OK)
        gen_rmtree(out);
}

int main(int argc, char **argv)
{
    char base[512], in[600];
    hid_t file;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc < 3) {
        fprintf(stderr, "usage: par_consolidate_h5 FIXTURES.h5 WORKDIR\n");
        MPI_Finalize();
        return 2;
    }
    file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(file >= 0);
    load(file);
    snprintf(base, sizeof base, "%s/par_consolidate_h5_np%d", argv[2], world);
    if (me == 0) {
        gen_rmtree(base);
        mkdir(base, 0777);
    }
    for (int P = 1; P <= world; P++) {
        MPI_Comm saver, cons;
        snprintf(in, sizeof in, "%s/saved_p%d", base, P);
        MPI_Comm_split(MPI_COMM_WORLD, me < P ? 0 : MPI_UNDEFINED, me, &saver);
        if (saver != MPI_COMM_NULL) {
            save(file, saver, P, in);
            MPI_Comm_free(&saver);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        for (int Q = 1; Q <= world; Q++) {
            MPI_Comm_split(MPI_COMM_WORLD, me < Q ? 0 : MPI_UNDEFINED, me, &cons);
            if (cons != MPI_COMM_NULL) {
                consolidate(file, cons, P, Q, in, base);
                MPI_Comm_free(&cons);
            }
            MPI_Barrier(MPI_COMM_WORLD);
        }
    }
    H5Fclose(file);
    TEST_AGREE(MPI_COMM_WORLD);
    if (me == 0 && test_failures == 0)
        gen_rmtree(base);
    MPI_Finalize();
    return TEST_EXIT();
}
