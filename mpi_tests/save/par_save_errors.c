/*
 * par_save_errors.c - failures of a sharded save.  Each case checks that
 * every rank returns the same code and the same message, that the message
 * names what failed, and that no final-named rank file and no temporary
 * file is left behind:
 *   output path is a file; a directory under /proc; a read-only tmpfs; a
 *   full 1 MiB tmpfs; one rank adds a bad block; one rank cannot create its
 *   file; one rank cannot rename (the others roll back); replicas that
 *   disagree on dtype or shape; a duplicate name; a tensor missing from the
 *   mapping.
 * The tmpfs cases need root and mount(2); they are skipped with a message
 * when the mount fails.
 *
 * Usage: par_save_errors WORKDIR
 */
#include <sys/mount.h>

#include "par_save_util.h"
#include "test_util.h"

static int me, np;
static char base[1024];

typedef struct blk {
    const char *name;
    sts_dtype dt;
    uint32_t ndim;
    uint64_t g[2], off[2], shape[2];
    size_t nbytes;
} blk;

/* Regular files in dir whose name contains needle. */
static int count_files(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[2048];
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strstr(e->d_name, needle) && stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            n++;
    }
    closedir(d);
    return n;
}

static int save(const char *dir, const blk *b, size_t n, const sts_save_opts *o, char *msg,
                size_t len)
{
    sts_writer *w = NULL;
    void **data = calloc(n + 1, sizeof *data);
    int rc = sts_writer_create(MPI_COMM_WORLD, dir, o, &w);
    CHECK_OK(rc);
    for (size_t i = 0; rc == STS_OK && i < n; i++) {
        sts_block sb = {b[i].name, b[i].dt, b[i].ndim, b[i].g, b[i].off, b[i].shape, NULL};
        data[i] = calloc(b[i].nbytes + 1, 1);
        memset(data[i], 'a' + me, b[i].nbytes);
        sb.data = data[i];
        sts_writer_add(w, &sb); /* a failure here is reported by the commit */
    }
    if (rc == STS_OK)
        rc = sts_writer_commit(w, NULL);
    snprintf(msg, len, "%s", rc == STS_OK ? "" : sts_writer_errmsg(w));
    sts_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    return rc;
}

/* The same code and text everywhere, the expected code, the text names `needle`, nothing left. */
static void expect(const char *what, int rc, int want, const char *msg, const char *needle,
                   const char *dir)
{
    int lo = 0, hi = 0;
    unsigned long h = 5381, hlo = 0, hhi = 0;
    for (const char *p = msg; *p; p++)
        h = h * 33 + (unsigned char)*p;
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hlo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hhi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
    CHECK(hlo == hhi);
    CHECK_RC(rc, want);
    CHECK(strstr(msg, needle) != NULL);
    CHECK(count_files(dir, "shard-") == 0);
    CHECK(count_files(dir, ".stshard-partial") == 0);
    if (me == 0)
        printf("%-22s %-16s %s\n", what, sts_errname(rc), msg);
    if (rc != want || !strstr(msg, needle))
        fprintf(stderr, "rank %d: case %s: got %s, message '%s'\n", me, what, sts_errname(rc), msg);
}

static void subdir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", base, name);
    if (me == 0)
        mkdir(out, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A row block of a [np*rows, cols] U8 tensor for this rank. */
static blk row_block(const char *name, uint64_t rows, uint64_t cols)
{
    blk b = {name,
             STS_U8,
             2,
             {rows * (uint64_t)np, cols},
             {rows * (uint64_t)me, 0},
             {rows, cols},
             (size_t)(rows * cols)};
    return b;
}

static void case_paths(const sts_save_opts *o)
{
    char dir[1200], file[1300], msg[1024];
    blk b = row_block("w", 4, 8);
    subdir(dir, sizeof dir, "paths");
    snprintf(file, sizeof file, "%s/afile", dir);
    if (me == 0)
        fclose(fopen(file, "w"));
    MPI_Barrier(MPI_COMM_WORLD);
    expect("output-is-a-file", save(file, &b, 1, o, msg, sizeof msg), STS_E_EXIST, msg,
           "not a directory", dir);
    snprintf(file, sizeof file, "%s/afile/sub", dir);
    expect("path-through-a-file", save(file, &b, 1, o, msg, sizeof msg), STS_E_NOENT, msg,
           "cannot create directory", dir);
    expect("under-proc", save("/proc/stshard-test/x", &b, 1, o, msg, sizeof msg), STS_E_NOENT, msg,
           "/proc/stshard-test", dir);
}

/* Rank 0 mounts a tmpfs; every rank learns whether it worked. */
static int mount_tmpfs(const char *dir, unsigned long flags, const char *opts, const char *what)
{
    int ok = 0;
    if (me == 0) {
        ok = mount("tmpfs", dir, "tmpfs", flags, opts) == 0;
        if (!ok)
            printf("SKIP %s: cannot mount a tmpfs on %s (%s); needs root and mount(2)\n", what, dir,
                   strerror(errno));
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return ok;
}

static void unmount(const char *dir)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0 && umount2(dir, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", dir, strerror(errno));
    MPI_Barrier(MPI_COMM_WORLD);
}

static void case_readonly(const sts_save_opts *o)
{
    char dir[1200], sub[1300], msg[1024];
    blk b = row_block("w", 4, 8);
    subdir(dir, sizeof dir, "readonly");
    if (!mount_tmpfs(dir, MS_RDONLY, "size=1m", "read-only directory"))
        return;
    expect("read-only-dir", save(dir, &b, 1, o, msg, sizeof msg), STS_E_ACCESS, msg, dir, dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    expect("read-only-parent", save(sub, &b, 1, o, msg, sizeof msg), STS_E_ACCESS, msg, sub, dir);
    unmount(dir);
}

static void case_full(const sts_save_opts *o)
{
    char dir[1200], msg[1024];
    /* Together the ranks write about 1.5 MiB into 1 MiB. */
    blk b = row_block("w", 1536 / (uint64_t)np, 1024);
    subdir(dir, sizeof dir, "full");
    if (!mount_tmpfs(dir, 0, "size=1m", "full disk"))
        return;
    expect("disk-full", save(dir, &b, 1, o, msg, sizeof msg), STS_E_NOSPACE, msg, "space", dir);
    unmount(dir);
}

static void case_one_rank(const sts_save_opts *o)
{
    char dir[1200], path[1400], msg[1024];
    blk b[2] = {row_block("w", 4, 8), row_block("v", 2, 3)};
    subdir(dir, sizeof dir, "one-rank");
    /* The last rank's block lies outside the tensor. */
    if (me == np - 1)
        b[1].off[0] = b[1].g[0];
    expect("bad-block-one-rank", save(dir, b, 2, o, msg, sizeof msg), STS_E_ARG, msg, "tensor 'v'",
           dir);
    b[1] = row_block("v", 2, 3);
    /* The last rank's temporary name is taken by a non-empty directory. */
    snprintf(path, sizeof path, "%s/.shard-%05d-model-00001-of-00001.safetensors.stshard-partial",
             dir, np);
    if (me == 0) {
        mkdir(path, 0777);
        snprintf(path + strlen(path), sizeof path - strlen(path), "/keep");
        fclose(fopen(path, "w"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(msg, sizeof msg, "%s", "");
    expect("create-fails-one-rank", save(dir, b, 2, o, msg, sizeof msg), STS_E_IO, msg,
           "stshard-partial", dir);
    /* The last rank's final name is a non-empty directory: its rename fails after the
     * others renamed, and they must take their files back. */
    subdir(dir, sizeof dir, "rename");
    snprintf(path, sizeof path, "%s/shard-%05d-model-00001-of-00001.safetensors", dir, np);
    if (me == 0) {
        mkdir(path, 0777);
        snprintf(path + strlen(path), sizeof path - strlen(path), "/keep");
        fclose(fopen(path, "w"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    {
        sts_save_opts f = *o;
        f.force = 1;
        expect("rename-fails-one-rank", save(dir, b, 2, &f, msg, sizeof msg), STS_E_IO, msg,
               "rename", dir);
    }
}

static void case_disagree(const sts_save_opts *o)
{
    char dir[1200], msg[1024];
    blk r = {"replica", me == 0 ? STS_F32 : STS_I32, 1, {4, 0}, {0, 0}, {4, 0}, 16};
    blk dup[2] = {row_block("w", 2, 2), row_block(me == np - 1 ? "w" : "x", 2, 2)};
    blk meta = row_block(me == np - 1 ? "__metadata__" : "m", 1, 1);
    subdir(dir, sizeof dir, "disagree");
    if (np > 1) {
        expect("replica-dtype", save(dir, &r, 1, o, msg, sizeof msg), STS_E_DTYPE_MISMATCH, msg,
               "replica", dir);
        r.dt = STS_F32;
        r.g[0] = r.shape[0] = me == 0 ? 4 : 5;
        r.nbytes = r.g[0] * 4;
        expect("replica-shape", save(dir, &r, 1, o, msg, sizeof msg), STS_E_ARG, msg,
               "global shapes", dir);
    }
    expect("duplicate-name", save(dir, dup, 2, o, msg, sizeof msg), STS_E_DUPLICATE_NAME, msg,
           "tensor 'w'", dir);
    expect("reserved-name", save(dir, &meta, 1, o, msg, sizeof msg), STS_E_RESERVED_NAME, msg,
           "__metadata__", dir);
}

static void case_mapping(void)
{
    char dir[1200], msg[1024];
    sts_mapping *m = NULL;
    sts_save_opts o;
    blk b[2] = {row_block("w", 2, 2), row_block(me == np - 1 ? "unmapped" : "v", 2, 2)};
    subdir(dir, sizeof dir, "mapping");
    CHECK_OK(sts_mapping_create(&m));
    CHECK_OK(sts_mapping_set(m, "w", 1));
    CHECK_OK(sts_mapping_set(m, "v", 2));
    sts_save_opts_init(&o);
    o.mapping = m;
    expect("unmapped-tensor", save(dir, b, 2, &o, msg, sizeof msg), STS_E_MAPPING, msg,
           "'unmapped' is not in the mapping", dir);
    sts_mapping_free(m);
}

int main(int argc, char **argv)
{
    sts_save_opts o;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    snprintf(base, sizeof base, "%s_np%d", argc > 1 ? argv[1] : "par_save_errors", np);
    if (me == 0) {
        char path[1200];
        mkdir(base, 0777);
        /* A run that died mid-case may have left its mounts behind. */
        snprintf(path, sizeof path, "%s/readonly", base);
        umount2(path, MNT_DETACH);
        snprintf(path, sizeof path, "%s/full", base);
        umount2(path, MNT_DETACH);
        printf("case                   code             message\n");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sts_save_opts_init(&o);
    case_paths(&o);
    case_readonly(&o);
    case_full(&o);
    case_one_rank(&o);
    case_disagree(&o);
    case_mapping();
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
