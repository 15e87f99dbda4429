/*
 * par_save.c - sharded save of the HDF5 fixtures (gen_fixtures.c) at any
 * rank count.  Each rank reads its hyperslab of every tensor (row, column
 * and 2-D grid splits, uneven; replicated and single-owner tensors) with
 * the HDF5 API and saves it through the writer API.  Then:
 *  - every rank checks its own file byte for byte: the header equals
 *    sts_header_encode of the blocks it should store (replicas assigned by
 *    the documented greedy rule) with the DCP metadata, the data equals the
 *    hyperslab bytes, and the parsed saved_offsets equal the hyperslab
 *    offsets; a rank with nothing to store has no file;
 *  - rank 0 reassembles every tensor from all rank files and compares it
 *    with the whole HDF5 dataset, each element covered exactly once;
 *  - saving again is AlreadyExists without force; with force it replaces
 *    the checkpoint and removes a stale rank file of an earlier run.
 *
 * Usage: par_save FIXTURES.h5 OUTDIR
 */
#include <hdf5.h>

#include "par_save_util.h"
#include "test_util.h"

#define MAXT 64
#define MAXR 16

typedef struct tensor {
    char name[128];
    char split[16];
    sts_dtype dt;
    uint32_t ndim;
    uint64_t gshape[4];
    uint64_t esize, numel;
} tensor;

/* A rank's part of a tensor. */
typedef struct part {
    int has, whole, keep;
    uint64_t off[4], shape[4], nbytes;
} part;

static tensor T[MAXT];
static size_t NT;
static part P[MAXT][MAXR];
static unsigned char *mine[MAXT]; /* this rank's hyperslabs */
static int me, np;

/* ---- fixtures ----------------------------------------------------------- */

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *ud)
{
    (void)g, (void)info, (void)ud;
    if (NT < MAXT)
        snprintf(T[NT++].name, sizeof T[0].name, "%s", name);
    return 0;
}

static void read_attr(hid_t ds, const char *key, char *out, size_t len)
{
    hid_t a = H5Aopen(ds, key, H5P_DEFAULT), t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *tmp = calloc(n + 1, 1);
    CHECK(a >= 0 && H5Aread(a, t, tmp) >= 0);
    snprintf(out, len, "%s", tmp);
    free(tmp);
    H5Tclose(t);
    H5Aclose(a);
}

static void load_tensors(hid_t file)
{
    char dt[32];
    CHECK(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, NULL) >= 0);
    for (size_t i = 0; i < NT; i++) {
        tensor *t = &T[i];
        hid_t ds = H5Dopen2(file, t->name, H5P_DEFAULT), sp = H5Dget_space(ds);
        hsize_t dims[4] = {0};
        int nd = H5Sget_simple_extent_ndims(sp);
        CHECK(nd >= 0 && nd <= 4);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        read_attr(ds, "dtype", dt, sizeof dt);
        read_attr(ds, "split", t->split, sizeof t->split);
        CHECK_OK(sts_dtype_from_name(dt, strlen(dt), &t->dt));
        t->ndim = (uint32_t)nd;
        t->esize = sts_dtype_bits(t->dt) / 8;
        t->numel = 1;
        for (int d = 0; d < nd; d++) {
            t->gshape[d] = dims[d];
            t->numel *= dims[d];
        }
        H5Sclose(sp);
        H5Dclose(ds);
    }
}

/* Reads the hyperslab (off, shape) of tensor t in its stored bytes. */
static void read_slab(hid_t file, const tensor *t, const uint64_t *off, const uint64_t *shape,
                      void *buf)
{
    hid_t ds = H5Dopen2(file, t->name, H5P_DEFAULT), ft = H5Dget_type(ds);
    hsize_t start[4], count[4];
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++) {
        start[d] = off[d];
        count[d] = shape[d];
        n *= shape[d];
    }
    if (t->ndim == 0) {
        CHECK(H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    } else if (n > 0) {
        hid_t fs = H5Dget_space(ds), ms = H5Screate_simple((int)t->ndim, count, NULL);
        CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
        /* The memory type is the file type: HDF5 copies the stored bytes unconverted. */
        CHECK(H5Dread(ds, ft, ms, fs, H5P_DEFAULT, buf) >= 0);
        H5Sclose(ms);
        H5Sclose(fs);
    }
    H5Tclose(ft);
    H5Dclose(ds);
}

/* ---- expected placement --------------------------------------------------- */

static void split1(uint64_t len, int n, int i, uint64_t *off, uint64_t *size)
{
    uint64_t base = len / (uint64_t)n, rem = len % (uint64_t)n, u = (uint64_t)i;
    *size = base + (u < rem);
    *off = u * base + (u < rem ? u : rem);
}

static void plan_part(const tensor *t, int r, part *p)
{
    int rows = 1, cols;
    const char *s = t->split;
    memset(p, 0, sizeof *p);
    for (uint32_t d = 0; d < t->ndim; d++)
        p->shape[d] = t->gshape[d];
    for (int i = 1; i * i <= np; i++)
        if (np % i == 0)
            rows = i;
    cols = np / rows;
    if (strcmp(s, "row") == 0)
        split1(t->gshape[0], np, r, &p->off[0], &p->shape[0]);
    else if (strcmp(s, "col") == 0 && t->ndim >= 2)
        split1(t->gshape[1], np, r, &p->off[1], &p->shape[1]);
    else if (strcmp(s, "col") == 0)
        split1(t->gshape[0], np, r, &p->off[0], &p->shape[0]);
    else if (strcmp(s, "grid") == 0) {
        split1(t->gshape[0], rows, r / cols, &p->off[0], &p->shape[0]);
        split1(t->gshape[1], cols, r % cols, &p->off[1], &p->shape[1]);
    }
    if (strcmp(s, "owner0") == 0)
        p->has = r == 0;
    else if (strcmp(s, "ownerlast") == 0)
        p->has = r == np - 1;
    else {
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->ndim; d++)
            n *= p->shape[d];
        p->has = n > 0;
    }
    p->nbytes = t->esize;
    p->whole = p->has;
    for (uint32_t d = 0; d < t->ndim; d++) {
        p->nbytes *= p->shape[d];
        p->whole &= p->off[d] == 0 && p->shape[d] == t->gshape[d];
    }
    p->keep = p->has;
}

static int by_size_desc(const void *a, const void *b)
{
    const tensor *x = &T[*(const size_t *)a], *y = &T[*(const size_t *)b];
    uint64_t bx = x->numel * x->esize, by = y->numel * y->esize;
    if (bx != by)
        return bx > by ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The writer's rule restated: whole tensors, largest first, go to the least-loaded holder. */
static void plan_all(void)
{
    uint64_t load[MAXR] = {0};
    size_t order[MAXT], n = 0;
    for (size_t t = 0; t < NT; t++) {
        int whole = 0;
        for (int r = 0; r < np; r++) {
            plan_part(&T[t], r, &P[t][r]);
            whole |= P[t][r].whole;
            if (P[t][r].has && !P[t][r].whole)
                load[r] += P[t][r].nbytes;
        }
        if (whole)
            order[n++] = t;
    }
    qsort(order, n, sizeof *order, by_size_desc);
    for (size_t i = 0; i < n; i++) {
        part *p = P[order[i]];
        int best = -1;
        for (int r = 0; r < np; r++)
            if (p[r].whole && (best < 0 || load[r] < load[best]))
                best = r;
        load[best] += p[best].nbytes;
        for (int r = 0; r < np; r++)
            p[r].keep = p[r].whole ? r == best : p[r].keep;
    }
}

/* ---- expected header ------------------------------------------------------ */

static int canon_cmp(const void *a, const void *b)
{
    const tensor *x = &T[*(const size_t *)a], *y = &T[*(const size_t *)b];
    if (x->dt != y->dt)
        return x->dt > y->dt ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Python json.dumps of a str (ensure_ascii) for the names used here. */
static void py_str(char *out, size_t len, const char *s)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    out[o++] = '"';
    while (*p && o + 16 < len) {
        uint32_t cp = *p;
        int extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : cp >= 0xc0 ? 1 : 0;
        if (extra)
            cp &= 0x3fu >> extra;
        for (int i = 1; i <= extra; i++)
            cp = cp << 6 | (p[i] & 0x3f);
        p += 1 + extra;
        if (cp == '"' || cp == '\\')
            o += (size_t)snprintf(out + o, len - o, "\\%c", (char)cp);
        else if (cp >= 0x20 && cp < 0x7f)
            out[o++] = (char)cp;
        else if (cp < 0x10000)
            o += (size_t)snprintf(out + o, len - o, "\\u%04x", cp);
        else
            o += (size_t)snprintf(out + o, len - o, "\\u%04x\\u%04x",
                                  0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + (cp & 0x3ff));
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* Tensors rank r stores, in canonical order; returns the count. */
static size_t kept(int r, size_t *idx)
{
    size_t n = 0;
    for (size_t t = 0; t < NT; t++)
        if (P[t][r].keep)
            idx[n++] = t;
    qsort(idx, n, sizeof *idx, canon_cmp);
    return n;
}

static void expected_info(int r, const size_t *idx, size_t n, char *out, size_t len)
{
    size_t o = 0;
    char name[512];
    o += (size_t)snprintf(out + o, len - o, "{");
    for (size_t i = 0; i < n; i++) {
        const part *p = &P[idx[i]][r];
        py_str(name, sizeof name, T[idx[i]].name);
        o += (size_t)snprintf(out + o, len - o, "%s%s: {\"saved_offsets\": [", i ? ", " : "", name);
        for (uint32_t d = 0; d < T[idx[i]].ndim; d++)
            o += (size_t)snprintf(out + o, len - o, "%s%llu", d ? ", " : "",
                                  (unsigned long long)p->off[d]);
        o += (size_t)snprintf(out + o, len - o, "]}");
    }
    snprintf(out + o, len - o, "}");
}

/* ---- checks --------------------------------------------------------------- */

static void check_parsed(const char *path, const size_t *idx, size_t n)
{
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start = 0;
    CHECK_OK(sts_header_read_file(path, &h, &start, &d));
    if (!h)
        return;
    CHECK_OK(sts_header_decode_sharding(h, &d));
    CHECK(sts_header_count(h) == n);
    CHECK(strcmp(sts_header_meta_get(h, "DCP_VERSION"), "1.0") == 0);
    CHECK(strcmp(sts_header_meta_get(h, "format"), "pt") == 0);
    CHECK(sts_header_meta_count(h) == 3);
    for (size_t i = 0; i < n; i++) {
        long k = sts_header_find(h, T[idx[i]].name, strlen(T[idx[i]].name));
        const sts_tensor_info *ti = k >= 0 ? sts_header_tensor(h, (size_t)k) : NULL;
        const part *p = &P[idx[i]][me];
        CHECK(ti != NULL);
        if (!ti || !ti->saved_offsets)
            continue;
        CHECK(ti->dtype == T[idx[i]].dt && ti->ndim == T[idx[i]].ndim);
        for (uint32_t dd = 0; dd < ti->ndim; dd++) {
            CHECK(ti->saved_offsets[dd] == p->off[dd]);
            CHECK(ti->shape[dd] == p->shape[dd]);
        }
    }
    /* PyTorch's spacing and ensure_ascii escaping, checked literally for odd names. */
    if (me == 0) {
        const char *info = sts_header_meta_get(h, "DCP_SHARDING_INFO");
        CHECK(info &&
              strstr(info, "\"weird \\\"name\\\" \\u00fc\\\\x\": {\"saved_offsets\": [0]}"));
        CHECK(info && strstr(info, "\"emoji.\\ud83d\\ude00\": {\"saved_offsets\": [0]}"));
    }
    sts_header_free(h);
}

static void check_my_file(const char *dir)
{
    char path[512], *info = malloc(1 << 16);
    size_t idx[MAXT], n = kept(me, idx), hlen = 0;
    sts_tensor_desc desc[MAXT];
    sts_meta_entry meta[3];
    uint64_t begin[MAXT], end[MAXT], total = 0;
    void *hdr = NULL;
    unsigned char *file = NULL;
    sts_diag d;

    su_rank_file(path, sizeof path, dir, me, 1, 1);
    if (n == 0) {
        CHECK(su_size(path) < 0);
        free(info);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        desc[i].name = T[idx[i]].name;
        desc[i].dtype = T[idx[i]].dt;
        desc[i].ndim = T[idx[i]].ndim;
        desc[i].shape = P[idx[i]][me].shape;
        total += P[idx[i]][me].nbytes;
    }
    expected_info(me, idx, n, info, 1 << 16);
    meta[0] = (sts_meta_entry){"DCP_SHARDING_INFO", info};
    meta[1] = (sts_meta_entry){"DCP_VERSION", "1.0"};
    meta[2] = (sts_meta_entry){"format", "pt"};
    CHECK_OK(
        sts_header_encode(desc, n, meta, 3, STS_LAYOUT_CANONICAL, 0, &hdr, &hlen, begin, end, &d));
    CHECK(su_size(path) == (long long)(hlen + total));
    file = malloc(hlen + total + 1);
    CHECK(su_pread(path, 0, file, hlen + total) == 0);
    CHECK(hdr && memcmp(file, hdr, hlen) == 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(end[i] - begin[i] == P[idx[i]][me].nbytes);
        CHECK(memcmp(file + hlen + begin[i], mine[idx[i]], P[idx[i]][me].nbytes) == 0);
    }
    check_parsed(path, idx, n);
    sts_free(hdr);
    free(file);
    free(info);
}

/* Copies a block into its place in the global tensor and counts coverage. */
static void place(const tensor *t, const uint64_t *off, const uint64_t *shape,
                  const unsigned char *src, unsigned char *dst, unsigned char *cover)
{
    uint64_t idx[4] = {0}, rows = 1, inner = t->ndim ? shape[t->ndim - 1] : 1;
    for (uint32_t d = 0; d + 1 < t->ndim; d++)
        rows *= shape[d];
    for (uint64_t r = 0; r < rows && inner > 0; r++) {
        uint64_t g = 0;
        for (uint32_t d = 0; d + 1 < t->ndim; d++)
            g = g * t->gshape[d] + off[d] + idx[d];
        if (t->ndim)
            g = g * t->gshape[t->ndim - 1] + off[t->ndim - 1];
        memcpy(dst + g * t->esize, src, inner * t->esize);
        for (uint64_t j = 0; j < inner; j++)
            cover[g + j]++;
        src += inner * t->esize;
        for (uint32_t d = t->ndim - 1; t->ndim > 0 && d-- > 0;) {
            if (++idx[d] < shape[d])
                break;
            idx[d] = 0;
        }
    }
}

static void add_file(const char *path, unsigned char **glob, unsigned char **cover, int *seen)
{
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start = 0;
    CHECK_OK(sts_header_read_file(path, &h, &start, &d));
    CHECK(h && sts_header_decode_sharding(h, &d) == STS_OK);
    for (size_t i = 0; h && i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        size_t t = 0;
        unsigned char *buf;
        while (t < NT && strcmp(T[t].name, ti->name) != 0)
            t++;
        CHECK(t < NT);
        if (t == NT || !ti->saved_offsets)
            continue;
        seen[t]++;
        buf = malloc(ti->end - ti->begin + 1);
        CHECK(su_pread(path, start + ti->begin, buf, ti->end - ti->begin) == 0);
        place(&T[t], ti->saved_offsets, ti->shape, buf, glob[t], cover[t]);
        free(buf);
    }
    sts_header_free(h);
}

/* Rank 0: every tensor rebuilt from all rank files equals the HDF5 dataset. */
static void check_reassembly(hid_t file, const char *dir)
{
    unsigned char *glob[MAXT], *cover[MAXT], *want;
    int seen[MAXT] = {0};
    char path[512];
    for (size_t t = 0; t < NT; t++) {
        glob[t] = calloc(T[t].numel * T[t].esize + 1, 1);
        cover[t] = calloc(T[t].numel + 1, 1);
    }
    for (int r = 0; r < np; r++) {
        su_rank_file(path, sizeof path, dir, r, 1, 1);
        if (su_size(path) >= 0)
            add_file(path, glob, cover, seen);
    }
    for (size_t t = 0; t < NT; t++) {
        uint64_t zero[4] = {0};
        int ok = 1;
        want = malloc(T[t].numel * T[t].esize + 1);
        read_slab(file, &T[t], zero, T[t].gshape, want);
        for (uint64_t e = 0; e < T[t].numel; e++)
            ok &= cover[t][e] == 1;
        CHECK(ok);
        CHECK(memcmp(glob[t], want, T[t].numel * T[t].esize) == 0);
        if (!ok || memcmp(glob[t], want, T[t].numel * T[t].esize) != 0)
            fprintf(stderr, "tensor '%s' does not reassemble\n", T[t].name);
        /* Each whole tensor is stored once; a zero-size one still appears. */
        CHECK(seen[t] >= 1);
        free(want);
        free(glob[t]);
        free(cover[t]);
    }
    CHECK(su_count(dir, ".stshard-partial") == 0);
}

/* ---- saves ------------------------------------------------------------ */

static int save(const char *dir, int force, sts_save_stats *st, char *msg, size_t len)
{
    sts_save_opts o;
    sts_writer *w = NULL;
    int rc;
    sts_save_opts_init(&o);
    o.force = force;
    rc = sts_writer_create(MPI_COMM_WORLD, dir, &o, &w);
    CHECK_OK(rc);
    if (rc != STS_OK)
        return rc;
    for (size_t t = 0; t < NT; t++) {
        sts_block b = {T[t].name,    T[t].dt,        T[t].ndim, T[t].gshape,
                       P[t][me].off, P[t][me].shape, mine[t]};
        if (P[t][me].has)
            CHECK_OK(sts_writer_add(w, &b));
    }
    rc = sts_writer_commit(w, st);
    snprintf(msg, len, "%s", sts_writer_errmsg(w));
    sts_writer_free(w);
    return rc;
}

/* Every rank got the same message. */
static void check_same_text(const char *msg)
{
    unsigned long h = 5381, lo = 0, hi = 0;
    for (const char *p = msg; *p; p++)
        h = h * 33 + (unsigned char)*p;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
}

static void run(hid_t file, const char *dir)
{
    sts_save_stats st;
    char msg[1024], stale[512];
    uint64_t want_bytes = 0, want_files = 0;
    for (size_t t = 0; t < NT; t++)
        want_bytes += T[t].numel * T[t].esize;
    for (int r = 0; r < np; r++) {
        size_t idx[MAXT];
        want_files += kept(r, idx) > 0;
    }
    memset(&st, 0, sizeof st);
    CHECK_OK(save(dir, 0, &st, msg, sizeof msg));
    CHECK(st.bytes_total == want_bytes);
    CHECK(st.files_total == want_files);
    MPI_Barrier(MPI_COMM_WORLD);
    check_my_file(dir);
    if (me == 0) {
        check_reassembly(file, dir);
        CHECK(su_count(dir, NULL) == (int)want_files);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    /* Saving over a checkpoint needs force. */
    CHECK_RC(save(dir, 0, &st, msg, sizeof msg), STS_E_EXIST);
    CHECK(strstr(msg, "already exists") != NULL);
    check_same_text(msg);
    /* With force, the checkpoint is replaced and a rank file of an older run goes. */
    snprintf(stale, sizeof stale, "%s/shard-00099-model-00001-of-00001.safetensors", dir);
    if (me == 0)
        fclose(fopen(stale, "w"));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_OK(save(dir, 1, &st, msg, sizeof msg));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(su_size(stale) < 0);
    check_my_file(dir);
    if (me == 0)
        CHECK(su_count(dir, NULL) == (int)want_files);
}

int main(int argc, char **argv)
{
    hid_t file;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    if (argc != 3 || np > MAXR) {
        fprintf(stderr, "usage: par_save FIXTURES.h5 OUTDIR (at most %d ranks)\n", MAXR);
        MPI_Finalize();
        return 2;
    }
    file = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(file >= 0);
    load_tensors(file);
    CHECK(NT >= 20);
    plan_all();
    for (size_t t = 0; t < NT; t++) {
        mine[t] = malloc(P[t][me].nbytes + 1);
        if (P[t][me].has)
            read_slab(file, &T[t], P[t][me].off, P[t][me].shape, mine[t]);
    }
    if (me == 0) {
        mkdir(argv[2], 0777);
        su_clear_dir(argv[2]);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    run(file, argv[2]);
    for (size_t t = 0; t < NT; t++)
        free(mine[t]);
    H5Fclose(file);
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
