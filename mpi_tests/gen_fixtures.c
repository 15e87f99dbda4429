/*
 * gen_fixtures.c - writes the reference global tensors of the save tests into
 * an HDF5 file (CTest setup fixture).
 *
 * One dataset per tensor, named after it, with two string attributes:
 *   "dtype"  the safetensors dtype name;
 *   "split"  how par_save shards it: row (dim 0), col (dim 1, dim 0 for 1-D),
 *            grid (dims 0 and 1 over a near-square grid of ranks),
 *            replicated (every rank holds it whole), owner0 / ownerlast (one
 *            rank holds it whole).
 * Storage: floats without an HDF5 type of their own (BF16, F16, the F8s) are
 * raw little-endian unsigned integers of their width; BOOL is uint8; C64 is
 * a compound {r, i} of two little-endian F32.  Scalars use H5S_SCALAR.
 * Values are a fixed function of (tensor number, element index).
 *
 * Usage: gen_fixtures OUT.h5
 */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    const char *name;
    const char *dtype;
    const char *split;
    int ndim;
    hsize_t dims[4];
} fixture;

static const fixture fixtures[] = {
    {"model.embed_tokens.weight", "BF16", "row", 2, {37, 29}},
    {"layers.0.attn.o_proj.weight", "BF16", "col", 2, {29, 37}},
    {"layers.0.mlp.grid.weight", "F32", "grid", 2, {13, 11}},
    {"layers.0.mlp.up.fp8", "F8_E4M3", "row", 2, {17, 9}},
    {"layers.0.mlp.down.fp8", "F8_E5M2", "col", 2, {5, 23}},
    {"buffers.positions", "I64", "row", 1, {23}},
    {"buffers.buckets", "I32", "grid", 3, {4, 6, 5}},
    {"conv.weight", "F16", "col", 4, {3, 4, 5, 6}},
    {"conv.grid4d", "F16", "grid", 4, {5, 7, 2, 3}},
    {"mask", "BOOL", "row", 2, {11, 7}},
    {"tiny.u8", "U8", "row", 2, {2, 9}},
    {"scalar.f64", "F64", "replicated", 0, {0}},
    {"scalar.step", "I8", "ownerlast", 0, {0}},
    {"complex.c64", "C64", "row", 2, {6, 3}},
    {"empty.f32", "F32", "owner0", 2, {0, 4}},
    {"norm.weight", "BF16", "replicated", 1, {29}},
    {"table.f32", "F32", "replicated", 2, {64, 48}},
    {"rope.f64", "F64", "replicated", 1, {40}},
    {"x.u16", "U16", "col", 2, {3, 3}},
    {"x.u32", "U32", "row", 1, {7}},
    {"x.u64", "U64", "grid", 2, {2, 2}},
    {"x.i16", "I16", "col", 2, {5, 5}},
    {"weird \"name\" \xc3\xbc\\x", "F32", "row", 1, {3}},
    {"emoji.\xf0\x9f\x98\x80", "F16", "owner0", 1, {4}},
};

/* The file type, element size and (for F32/F64/C64) whether values are real floats. */
static hid_t file_type(const char *dt, size_t *esize)
{
    static const struct {
        const char *name;
        size_t size;
        int kind; /* 0 unsigned, 1 signed, 2 float */
    } t[] = {{"BOOL", 1, 0}, {"U8", 1, 0},  {"I8", 1, 1},  {"F8_E4M3", 1, 0}, {"F8_E5M2", 1, 0},
             {"U16", 2, 0},  {"I16", 2, 1}, {"F16", 2, 0}, {"BF16", 2, 0},    {"U32", 4, 0},
             {"I32", 4, 1},  {"F32", 4, 2}, {"U64", 8, 0}, {"I64", 8, 1},     {"F64", 8, 2}};
    if (strcmp(dt, "C64") == 0) {
        hid_t c = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(c, "r", 0, H5T_IEEE_F32LE);
        H5Tinsert(c, "i", 4, H5T_IEEE_F32LE);
        *esize = 8;
        return c;
    }
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(dt, t[i].name) != 0)
            continue;
        *esize = t[i].size;
        if (t[i].kind == 2)
            return H5Tcopy(t[i].size == 4 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE);
        switch (t[i].size) {
        case 1:
            return H5Tcopy(t[i].kind ? H5T_STD_I8LE : H5T_STD_U8LE);
        case 2:
            return H5Tcopy(t[i].kind ? H5T_STD_I16LE : H5T_STD_U16LE);
        case 4:
            return H5Tcopy(t[i].kind ? H5T_STD_I32LE : H5T_STD_U32LE);
        default:
            return H5Tcopy(t[i].kind ? H5T_STD_I64LE : H5T_STD_U64LE);
        }
    }
    return H5I_INVALID_HID;
}

static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ULL;
    x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dULL;
    return x ^ (x >> 33);
}

/* Element e of tensor k, little-endian, into p (esize bytes). */
static void element(const char *dt, size_t esize, size_t k, uint64_t e, unsigned char *p)
{
    uint64_t h = mix(k * 1000003ULL + e + 1);
    if (strcmp(dt, "F32") == 0 || strcmp(dt, "C64") == 0) {
        float f[2] = {(float)e * 0.25f - 3.0f, (float)(h % 1000) / 64.0f};
        memcpy(p, f, esize);
    } else if (strcmp(dt, "F64") == 0) {
        double d = (double)e * -0.125 + (double)(h % 97);
        memcpy(p, &d, 8);
    } else if (strcmp(dt, "BOOL") == 0) {
        p[0] = (unsigned char)(h & 1);
    } else {
        for (size_t i = 0; i < esize; i++)
            p[i] = (unsigned char)(h >> (8 * i));
    }
}

static int put_attr(hid_t ds, const char *key, const char *value)
{
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a;
    herr_t e;
    H5Tset_size(st, strlen(value) + 1);
    a = H5Acreate2(ds, key, st, sp, H5P_DEFAULT, H5P_DEFAULT);
    e = a < 0 ? -1 : H5Awrite(a, st, value);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    return e < 0 ? -1 : 0;
}

static int write_fixture(hid_t file, size_t k)
{
    const fixture *f = &fixtures[k];
    size_t esize = 0;
    hid_t ft = file_type(f->dtype, &esize), sp, ds, lcpl = H5Pcreate(H5P_LINK_CREATE);
    uint64_t n = 1;
    unsigned char *buf;
    int rc = 0;
    for (int d = 0; d < f->ndim; d++)
        n *= f->dims[d];
    buf = malloc(n * esize + 1);
    for (uint64_t e = 0; e < n; e++)
        element(f->dtype, esize, k, e, buf + e * esize);
    /* Names are UTF-8; say so, so HDF5 tools show them right. */
    H5Pset_char_encoding(lcpl, H5T_CSET_UTF8);
    sp = f->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(f->ndim, f->dims, NULL);
    ds = H5Dcreate2(file, f->name, ft, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    /* The buffer already holds the file type's bytes: write with the file type, no conversion. */
    if (ds < 0 || (n > 0 && H5Dwrite(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) ||
        put_attr(ds, "dtype", f->dtype) != 0 || put_attr(ds, "split", f->split) != 0) {
        fprintf(stderr, "gen_fixtures: cannot write dataset '%s'\n", f->name);
        rc = -1;
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Pclose(lcpl);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    hid_t file;
    int rc = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: gen_fixtures OUT.h5\n");
        return 2;
    }
    file = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        fprintf(stderr, "gen_fixtures: cannot create %s\n", argv[1]);
        return 1;
    }
    for (size_t k = 0; k < sizeof fixtures / sizeof fixtures[0]; k++)
        rc |= write_fixture(file, k);
    if (H5Fclose(file) < 0)
        rc = -1;
    if (rc == 0)
        printf("gen_fixtures: %zu tensors written to %s\n", sizeof fixtures / sizeof fixtures[0],
               argv[1]);
    return rc == 0 ? 0 : 1;
}
