/*
 * par_reshard_util.h - the HDF5 reference tensors (mpi_tests/fixtures/gen_fixtures.c)
 * as the resharding tests see them: name, dtype, global shape, the split
 * the source checkpoint uses, and the stored bytes of any hyperslab.
 *
 * Datasets keep each element's little-endian bytes (floats without an HDF5
 * type of their own are stored as unsigned integers of their width), so
 * reading with the dataset's own type as memory type gives exactly the
 * bytes a safetensors file holds.
 */
#ifndef STS_PAR_RESHARD_UTIL_H
#define STS_PAR_RESHARD_UTIL_H

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stshard.h"

#define RF_MAX_TENSORS 64

typedef struct rf_tensor {
    char name[128];
    char split[16]; /* row, col, grid, replicated, owner0, ownerlast */
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t shape[4];
    uint64_t nbytes;
} rf_tensor;

typedef struct rf_set {
    hid_t file;
    size_t n;
    rf_tensor t[RF_MAX_TENSORS];
} rf_set;

static herr_t rf_collect(hid_t g, const char *name, const H5L_info_t *info, void *ud)
{
    rf_set *s = ud;
    (void)g, (void)info;
    if (s->n < RF_MAX_TENSORS)
        snprintf(s->t[s->n++].name, sizeof s->t[0].name, "%s", name);
    return 0;
}

static int rf_attr(hid_t ds, const char *key, char *out, size_t len)
{
    hid_t a = H5Aopen(ds, key, H5P_DEFAULT), ty = a >= 0 ? H5Aget_type(a) : -1;
    size_t n = ty >= 0 ? H5Tget_size(ty) : 0;
    char *tmp = calloc(n + 1, 1);
    int ok = tmp && a >= 0 && H5Aread(a, ty, tmp) >= 0;
    if (ok)
        snprintf(out, len, "%s", tmp);
    free(tmp);
    if (ty >= 0)
        H5Tclose(ty);
    if (a >= 0)
        H5Aclose(a);
    return ok ? 0 : -1;
}

/* Opens the fixtures and describes every tensor; 0 or -1. */
static int rf_open(const char *path, rf_set *s)
{
    char dt[32];
    memset(s, 0, sizeof *s);
    s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->file < 0 || H5Literate(s->file, H5_INDEX_NAME, H5_ITER_INC, NULL, rf_collect, s) < 0)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        rf_tensor *t = &s->t[i];
        hid_t ds = H5Dopen2(s->file, t->name, H5P_DEFAULT), sp = H5Dget_space(ds);
        hsize_t dims[4] = {0};
        int nd = H5Sget_simple_extent_ndims(sp);
        uint64_t numel = 1;
        if (nd < 0 || nd > 4 || rf_attr(ds, "dtype", dt, sizeof dt) != 0 ||
            rf_attr(ds, "split", t->split, sizeof t->split) != 0 ||
            sts_dtype_from_name(dt, strlen(dt), &t->dtype) != STS_OK)
            return -1;
        H5Sget_simple_extent_dims(sp, dims, NULL);
        t->ndim = (uint32_t)nd;
        for (int d = 0; d < nd; d++) {
            t->shape[d] = dims[d];
            numel *= dims[d];
        }
        sts_dtype_nbytes(t->dtype, numel, &t->nbytes);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    return 0;
}

static void rf_close(rf_set *s)
{
    if (s->file >= 0)
        H5Fclose(s->file);
}

/* The stored bytes of hyperslab (off, shape) of t into buf; 0 or -1. */
static int rf_read(const rf_set *s, const rf_tensor *t, const uint64_t *off, const uint64_t *shape,
                   void *buf)
{
    hid_t ds = H5Dopen2(s->file, t->name, H5P_DEFAULT), ty = H5Dget_type(ds);
    hsize_t start[4], count[4];
    uint64_t n = 1;
    int ok = ds >= 0 && ty >= 0;
    for (uint32_t d = 0; d < t->ndim; d++) {
        start[d] = off[d];
        count[d] = shape[d];
        n *= shape[d];
    }
    if (ok && t->ndim == 0) {
        ok = H5Dread(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    } else if (ok && n > 0) {
        hid_t fs = H5Dget_space(ds), ms = H5Screate_simple((int)t->ndim, count, NULL);
        ok = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dread(ds, ty, ms, fs, H5P_DEFAULT, buf) >= 0;
        H5Sclose(ms);
        H5Sclose(fs);
    }
    if (ty >= 0)
        H5Tclose(ty);
    if (ds >= 0)
        H5Dclose(ds);
    return ok ? 0 : -1;
}

#endif /* STS_PAR_RESHARD_UTIL_H */
