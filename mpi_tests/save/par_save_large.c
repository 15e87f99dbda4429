/*
 * par_save_large.c - one block over 2 GiB (a single BF16 tensor of
 * 2 GiB + 4 bytes on rank 0) saved through MPI-IO, whose int counts cap a
 * transfer below 2 GiB.  The file is checked against the generator at many
 * sampled elements, densely around the 1 GiB transfer-chunk boundaries and
 * the 2 GiB and 4 GiB-element marks, plus a tensor placed after it (data
 * offset past 2 GiB) and one before it.  Other ranks save a small block and
 * wait at the agreement.  Runs on a tmpfs (argument); skipped (exit 77)
 * when it lacks room.
 *
 * Usage: par_save_large DIR
 */
#include <sys/statvfs.h>

#include "model.h"
#include "par_save_util.h"
#include "test_util.h"

#define SEED     11
#define BIG_ROWS 3
#define BIG_COLS 357913942ULL /* 3 * 357913942 * 2 bytes = 2 GiB + 4 */

typedef struct tdesc {
    const char *name;
    sts_dtype dt;
    uint32_t ndim;
    uint64_t shape[2];
} tdesc;

static const tdesc big = {"big", STS_BF16, 2, {BIG_ROWS, BIG_COLS}};
static const tdesc tail = {"tail", STS_BF16, 1, {5, 0}}; /* sorts after "big": offset > 2 GiB */
static const tdesc head = {"a.f32", STS_F32, 1, {3, 0}}; /* F32 sorts before BF16 */
static const tdesc other = {"other.i32", STS_I32, 1, {1000, 0}};

static uint64_t numel(const tdesc *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

static void *make(const tdesc *t)
{
    uint64_t bytes = numel(t) * (sts_dtype_bits(t->dt) / 8);
    uint64_t zero[2] = {0, 0};
    void *p = malloc(bytes);
    if (p)
        model_fill(SEED, model_name_key(t->name), t->dt, t->ndim, t->shape, zero, t->shape, p);
    return p;
}

static int add(sts_writer *w, const tdesc *t, const void *data)
{
    uint64_t zero[2] = {0, 0};
    sts_block b = {t->name, t->dt, t->ndim, t->shape, zero, t->shape, data};
    return sts_writer_add(w, &b);
}

/* Compares element e of tensor t, stored at data_start + begin, with the generator. */
static int check_elem(const char *path, uint64_t at, const tdesc *t, uint64_t e)
{
    unsigned esize = sts_dtype_bits(t->dt) / 8;
    uint64_t got = 0, want = model_value(SEED, model_name_key(t->name), t->dt, e);
    if (su_pread(path, at + e * esize, &got, esize) != 0)
        return 0;
    if (esize < 8)
        want &= (1ULL << (8 * esize)) - 1;
    return got == want;
}

static void check_tensor(const char *path, sts_header *h, uint64_t start, const tdesc *t,
                         int sampled)
{
    long k = sts_header_find(h, t->name, strlen(t->name));
    const sts_tensor_info *ti = k >= 0 ? sts_header_tensor(h, (size_t)k) : NULL;
    uint64_t n = numel(t), esize = sts_dtype_bits(t->dt) / 8, at, bad = 0, tried = 0;
    CHECK(ti != NULL);
    if (!ti)
        return;
    CHECK(ti->end - ti->begin == n * esize);
    at = start + ti->begin;
    if (!sampled) {
        for (uint64_t e = 0; e < n; e++, tried++)
            bad += !check_elem(path, at, t, e);
    } else {
        /* 1 GiB transfer chunks start at multiples of 2^30 bytes from the block's start; the
         * file offset 2^31 and the 2^30-element mark are checked too. */
        uint64_t marks[] = {0,
                            (1ULL << 30) / esize,
                            (2ULL << 30) / esize,
                            ((1ULL << 31) - at) / esize,
                            1ULL << 30,
                            n - 1};
        for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++)
            for (uint64_t e = marks[m] > 64 ? marks[m] - 64 : 0; e < marks[m] + 64 && e < n;
                 e++, tried++)
                bad += !check_elem(path, at, t, e);
        for (uint64_t s = 1; s <= 20000; s++, tried++)
            bad += !check_elem(path, at, t, (s * 0x9e3779b97f4a7c15ULL) % n);
    }
    CHECK(bad == 0);
    printf("%s: %llu elements checked, %llu wrong (data at file offset %llu)\n", t->name,
           (unsigned long long)tried, (unsigned long long)bad, (unsigned long long)at);
}

static void verify(const char *path)
{
    sts_header *h = NULL;
    sts_diag d;
    uint64_t start = 0;
    CHECK_OK(sts_header_read_file(path, &h, &start, &d));
    if (!h)
        return;
    CHECK_OK(sts_header_decode_sharding(h, &d));
    CHECK(sts_header_count(h) == 3);
    CHECK((long long)(start + sts_header_data_size(h)) == su_size(path));
    check_tensor(path, h, start, &head, 0);
    check_tensor(path, h, start, &tail, 0);
    check_tensor(path, h, start, &big, 1);
    /* The tail lies past 2 GiB of data, where a 32-bit offset would have wrapped. */
    CHECK(sts_header_tensor(h, 2)->begin > (2ULL << 30));
    sts_header_free(h);
}

int main(int argc, char **argv)
{
    int me, np, room, all_room;
    long pid;
    char dir[1024], path[1200];
    struct statvfs sv;
    void *data[3] = {NULL, NULL, NULL};
    sts_writer *w = NULL;
    sts_save_stats st;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    /* /dev/shm is shared by every build on the host: rank 0's pid keeps the name unique. */
    pid = (long)getpid();
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    snprintf(dir, sizeof dir, "%s_np%d_%ld", argc > 1 ? argv[1] : "/dev/shm/par_save_large", np,
             pid);
    snprintf(path, sizeof path, "%s", dir);
    if (strrchr(path, '/'))
        *strrchr(path, '/') = '\0';
    room = me != 0 || (statvfs(strrchr(dir, '/') ? path : ".", &sv) == 0 &&
                       (uint64_t)sv.f_bavail * sv.f_frsize > (5ULL << 30));
    MPI_Allreduce(&room, &all_room, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_room) {
        if (me == 0)
            printf("SKIP: less than 5 GiB free for a 2 GiB block and its file\n");
        MPI_Finalize();
        return 77;
    }
    if (me == 0) {
        data[0] = make(&big);
        data[1] = make(&tail);
        data[2] = make(&head);
    } else {
        data[0] = make(&other);
    }
    CHECK(data[0] != NULL);
    CHECK_OK(sts_writer_create(MPI_COMM_WORLD, dir, NULL, &w));
    if (me == 0) {
        CHECK_OK(add(w, &big, data[0]));
        CHECK_OK(add(w, &tail, data[1]));
        CHECK_OK(add(w, &head, data[2]));
    } else {
        uint64_t off[1] = {0};
        sts_block b = {other.name, other.dt, 1, other.shape, off, other.shape, data[0]};
        /* Each other rank saves its own row of a [np-1, 1000] tensor. */
        uint64_t g[2] = {(uint64_t)np - 1, 1000}, o2[2] = {(uint64_t)me - 1, 0}, s2[2] = {1, 1000};
        b.ndim = 2, b.global_shape = g, b.offsets = o2, b.shape = s2;
        CHECK_OK(sts_writer_add(w, &b));
    }
    MPI_Barrier(MPI_COMM_WORLD); /* the time printed is the commit's, not rank 0's generation */
    CHECK_OK(sts_writer_commit(w, &st));
    if (me == 0)
        printf("saved %llu bytes in %.2f s\n", (unsigned long long)st.bytes_total, st.seconds);
    sts_writer_free(w);
    for (int i = 0; i < 3; i++)
        free(data[i]);
    if (me == 0) {
        su_rank_file(path, sizeof path, dir, 0, 1, 1);
        CHECK(st.bytes_local == numel(&big) * 2 + 10 + 12);
        verify(path);
        su_clear_dir(dir);
        rmdir(dir);
    }
    TEST_AGREE(MPI_COMM_WORLD);
    MPI_Finalize();
    return TEST_EXIT();
}
