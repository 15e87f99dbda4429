/*
 * consolidate.c - collective consolidation of rank files into a Hugging Face
 * checkpoint (docs/format.md §4).  The phases, each ending with an error agreement so
 * that every rank leaves with the same code and none waits forever:
 *
 *  1. setup    rank 0 lists the input directory and checks the output one;
 *              it broadcasts the file names with its options and mapping, so
 *              the plan depends on rank 0's arguments only.
 *  2. headers  rank r reads and validates the headers of files r, r+P, ...
 *              (each header is read once in all) and turns them into compact
 *              block records.
 *  3. plan     the distributed metadata plane (meta.c): each tensor's records
 *              go to one owner rank, which checks dtypes, shapes and
 *              coverage; every rank gets a summary of every tensor and lays
 *              out the same output files and offsets, then fetches the
 *              blocks its own share of the output needs.  No rank holds all
 *              records.  Nothing has been written yet.
 *  4. create   rank 0 creates every output file under its temporary name and
 *              writes its header (each header is written by one rank; publish.c).
 *  5. data     every rank copies its byte range of the output (consolidate_data.c).
 *  6. publish  rank 0 renames the files to their final names, then writes
 *              model.safetensors.index.json last and syncs the directory
 *              (publish.c, shared with the direct save).
 *
 * On failure the temporaries are removed and no file appears under a final
 * name.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckptscan.h"
#include "consolidate.h"
#include "meta.h"
#include "mpiio.h"
#include "publish.h"

typedef struct cons {
    MPI_Comm comm;
    int rank, nranks;
    const char *indir, *outdir;
    sts_consolidate_opts o;
    sts_diag *diag;
    unsigned char *setup; /* rank 0's broadcast: options, file names, mapping */
    size_t nin;
    char **in_names, **in_paths;
    sts_plan_map_entry *map;
    size_t nmap;
    int copy_range;       /* rank 0's STSHARD_COPY_RANGE, for every rank */
    sts_bytes recs;       /* block records of the files this rank read (meta.c) */
    sts_meta meta;        /* the distributed plan */
    const sts_plan *plan; /* meta.plan */
    sts__publish out;     /* output names, temporaries, publishing */
    sts_plan_opts po;     /* the layout's options; publish.c encodes the headers with them */
    struct stat *in_seen; /* the input files this rank read, as they were (size, time, inode) */
} cons;

void sts_consolidate_opts_init(sts_consolidate_opts *o)
{
    memset(o, 0, sizeof *o);
    o->layout = STS_LAYOUT_CANONICAL;
    o->buffer_size = STS_CONS_DEFAULT_BUFFER;
}

/* ---- 1. setup ------------------------------------------------------------ */

/* Rank 0: the sorted names of indir's rank files, as ckptscan.c judges the directory. */
static int list_inputs(cons *C, char ***names, size_t *n)
{
    int rc = STS_OK;
    sts__ckptscan scan = {0};
    *names = NULL;
    *n = 0;
    STS_CHECK(sts__ckptscan_dir(C->indir, &scan, C->diag));
    /* Its model files carry no DCP_SHARDING_INFO: say so before any header is read. */
    STS_GOTO_IF(scan.kind == STS_CKPT_FILE, C->diag, STS_E_SHARDING_INFO,
                "%s: holds a Hugging Face checkpoint (%s), not rank files: nothing to consolidate",
                C->indir, STS_SINGLE_NAME);
    STS_GOTO_IF(scan.kind == STS_CKPT_INDEXED, C->diag, STS_E_SHARDING_INFO,
                "%s: holds a Hugging Face checkpoint (%s%s%s), not rank files: nothing to "
                "consolidate",
                C->indir, STS_INDEX_NAME, scan.n ? ", " : "", scan.n ? scan.names[0] : "");
    *names = scan.names;
    *n = scan.n;
    scan.names = NULL;
    scan.n = 0;
done:
    sts__ckptscan_free(&scan);
    return rc;
}

/* Rank 0: refuses to write into the input directory (same inode). */
static int check_outdir(const cons *C)
{
    struct stat a, b;
    if (stat(C->outdir, &b) != 0)
        return STS_OK; /* created later */
    if (!S_ISDIR(b.st_mode))
        return sts__fail(C->diag, STS_E_EXIST, "%s: exists and is not a directory", C->outdir);
    if (stat(C->indir, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return sts__fail(C->diag, STS_E_USAGE, "the output directory %s is the input directory %s",
                         C->outdir, C->indir);
    return STS_OK;
}

/* Rank 0: packs options, input names and mapping for the broadcast. */
static int pack_setup(cons *C, const sts_consolidate_opts *o, sts_bytes *k)
{
    int rc = STS_OK;
    char **names = NULL;
    size_t n = 0, nmap = o->mapping ? sts_mapping_count(o->mapping) : 0;
    STS_CHECK(list_inputs(C, &names, &n));
    STS_CHECK(check_outdir(C));
    STS_GOTO_IF(sts__bytes_put_u64(k, n) || sts__bytes_put_u64(k, (uint64_t)o->layout) ||
                    sts__bytes_put_u64(k, o->align) || sts__bytes_put_u64(k, o->max_file_size) ||
                    sts__bytes_put_u64(k, (uint64_t)o->drop_unmapped) ||
                    sts__bytes_put_u64(k, (uint64_t)o->fsync) ||
                    sts__bytes_put_u64(k, (uint64_t)o->force) ||
                    sts__bytes_put_u64(k, o->mapping ? 1 : 0) || sts__bytes_put_u64(k, nmap) ||
                    sts__bytes_put_u64(k, (uint64_t)sts__consolidate_data_range_env()),
                C->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        STS_GOTO_IF(sts__bytes_put_u64(k, strlen(names[i])) ||
                        sts__bytes_put_str(k, names[i], strlen(names[i])),
                    C->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nmap; i++) {
        const char *name;
        unsigned idx;
        STS_CHECK(sts_mapping_at(o->mapping, i, &name, &idx));
        STS_GOTO_IF(sts__bytes_put_u64(k, idx) || sts__bytes_put_u64(k, strlen(name)) ||
                        sts__bytes_put_str(k, name, strlen(name)),
                    C->diag, STS_E_NOMEM, "out of memory");
    }
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Every rank: decodes rank 0's setup into options, input paths and mapping. */
static int unpack_setup(cons *C, unsigned char *p, size_t len)
{
    int rc = STS_OK;
    uint64_t v[10], has_map;
    size_t at = sizeof v;
    memcpy(v, p, sizeof v);
    C->nin = v[0];
    C->o.layout = (sts_layout)v[1];
    C->o.align = v[2];
    C->o.max_file_size = v[3];
    C->o.drop_unmapped = (int)v[4];
    C->o.fsync = (int)v[5];
    C->o.force = (int)v[6];
    has_map = v[7];
    C->nmap = v[8];
    C->copy_range = (int)v[9];
    C->in_names = sts__calloc_array(C->nin, sizeof *C->in_names);
    C->in_paths = sts__calloc_array(C->nin, sizeof *C->in_paths);
    C->map = sts__calloc_array(C->nmap, sizeof *C->map);
    STS_GOTO_IF(!C->in_names || !C->in_paths || !C->map, C->diag, STS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < C->nin; i++) {
        uint64_t n;
        memcpy(&n, p + at, 8);
        C->in_names[i] = (char *)(p + at + 8); /* lives in C->setup */
        at += 8 + sts__bytes_str_space(n);
        C->in_paths[i] = sts__path_join(C->indir, C->in_names[i]);
        STS_GOTO_IF(!C->in_paths[i], C->diag, STS_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < C->nmap; i++) {
        uint64_t idx, n;
        memcpy(&idx, p + at, 8);
        memcpy(&n, p + at + 8, 8);
        C->map[i].file_index = (unsigned)idx;
        C->map[i].name = (const char *)(p + at + 16);
        at += 16 + sts__bytes_str_space(n);
    }
    if (!has_map) {
        free(C->map);
        C->map = NULL;
    }
    STS_GOTO_IF(at != len, C->diag, STS_E_INTERNAL, "setup message: %zu of %zu bytes used", at,
                len);
done:
    return rc;
}

static int phase_setup(cons *C, const sts_consolidate_opts *o)
{
    int rc = STS_OK;
    sts_bytes k = {NULL, 0, 0};
    uint64_t len = 0;
    if (C->rank == 0) {
        rc = pack_setup(C, o, &k);
        len = k.len;
    }
    STS_CHECK(sts__mpiio_agree(C->comm, rc, C->diag));
    STS_MPI_CALL(C->diag, MPI_Bcast, (&len, 1, MPI_UINT64_T, 0, C->comm));
    STS_GOTO_IF(len > INT_MAX, C->diag, STS_E_UNSUPPORTED, "input listing too large");
    if (C->rank != 0) {
        k.buf = malloc(len ? len : 1);
        rc = k.buf ? STS_OK : sts__fail(C->diag, STS_E_NOMEM, "out of memory");
    }
    STS_CHECK(sts__mpiio_agree(C->comm, rc, C->diag));
    STS_MPI_CALL(C->diag, MPI_Bcast, (k.buf, (int)len, MPI_BYTE, 0, C->comm));
    C->setup = k.buf;
    k.buf = NULL;
    rc = unpack_setup(C, C->setup, len);
    if (rc == STS_OK)
        rc = STS_FAULT("cons.listed", C->diag);
    rc = sts__mpiio_agree(C->comm, rc, C->diag);
done:
    free(k.buf);
    return rc;
}

/* ---- 2. headers ---------------------------------------------------------- */

static int pack_file(cons *C, size_t fi, sts_bytes *k)
{
    int rc = STS_OK;
    sts_header *h = NULL;
    uint64_t start = 0;
    STS_GOTO_IF(stat(C->in_paths[fi], &C->in_seen[fi]) != 0, C->diag, sts__err_from_errno(errno),
                "%s: %s", C->in_paths[fi], strerror(errno));
    STS_CHECK(sts_header_read_file(C->in_paths[fi], &h, &start, C->diag));
    rc = sts_header_decode_sharding(h, C->diag);
    if (rc != STS_OK) {
        sts__diag_prefix(C->diag, "%s", C->in_paths[fi]);
        goto done;
    }
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        STS_GOTO_IF(t->name_len > UINT32_MAX / 2 || i > UINT32_MAX, C->diag, STS_E_UNSUPPORTED,
                    "%s: name too long or too many tensors", C->in_paths[fi]);
        STS_GOTO_IF(sts__meta_put_block(k, (uint32_t)fi, (uint32_t)i, start + t->begin, t->name,
                                        t->name_len, t->dtype, t->ndim, t->saved_offsets, t->shape,
                                        NULL),
                    C->diag, STS_E_NOMEM, "out of memory");
    }
done:
    sts_header_free(h);
    return rc;
}

/* Each input file's header is read by one rank: files r, r+P, ... */
static int phase_headers(cons *C)
{
    int rc = STS_OK;
    C->in_seen = sts__calloc_array(C->nin, sizeof *C->in_seen);
    if (!C->in_seen)
        rc = sts__fail(C->diag, STS_E_NOMEM, "out of memory");
    for (size_t f = (size_t)C->rank; rc == STS_OK && f < C->nin; f += (size_t)C->nranks)
        rc = pack_file(C, f, &C->recs);
    return sts__mpiio_agree(C->comm, rc, C->diag);
}

/* ---- 3. plan -------------------------------------------------------------- */

static int phase_plan(cons *C)
{
    int rc;
    sts_plan_opts *po = &C->po;
    /* Every rank measures; rank 0 encodes each header only when it writes it
     * (publish.c), after the metadata plane has let go of its buffers. */
    sts__plan_opts_output(po, &C->o, C->map, C->nmap);
    po->file_names = (const char *const *)C->in_names;
    rc = sts__meta_plan(C->comm, &C->recs, po, NULL, &C->meta, C->diag);
    C->plan = C->meta.plan;
    if (rc == STS_OK)
        rc = STS_FAULT("cons.planned", C->diag);
    return sts__mpiio_agree(C->comm, rc, C->diag);
}

/* ---- 4. create -------------------------------------------------------------- */

static int phase_create(cons *C)
{
    C->out.plan = C->plan;
    C->out.dir = C->outdir;
    C->out.fsync = C->o.fsync;
    C->out.force = C->o.force;
    C->out.comm = C->comm;
    C->out.rank = C->rank;
    C->out.encode = &C->po;
    return sts__publish_open(&C->out, 1, C->diag);
}

/* ---- 5. data -------------------------------------------------------------- */

/*
 * The input files this rank read headers from must be as they were then: a
 * file rewritten, grown or shrunk during the run (another job still writing
 * it, say) may have handed us bytes that do not belong to the header we
 * planned from.  Size, modification time and inode are compared.
 */
static int check_inputs_unchanged(const cons *C)
{
    for (size_t f = (size_t)C->rank; f < C->nin; f += (size_t)C->nranks) {
        const struct stat *a = &C->in_seen[f];
        struct stat b;
        if (stat(C->in_paths[f], &b) != 0)
            return sts__fail(C->diag, sts__err_from_errno(errno), "%s: changed during the run: %s",
                             C->in_paths[f], strerror(errno));
        if (a->st_size != b.st_size || a->st_ino != b.st_ino || a->st_dev != b.st_dev ||
            a->st_mtim.tv_sec != b.st_mtim.tv_sec || a->st_mtim.tv_nsec != b.st_mtim.tv_nsec)
            return sts__fail(C->diag, STS_E_IO,
                             "%s: changed during the run (size %lld bytes, now %lld)",
                             C->in_paths[f], (long long)a->st_size, (long long)b.st_size);
    }
    return STS_OK;
}

static int phase_data(cons *C, uint64_t *bytes_local)
{
    sts_cons_data a;
    int rc;
    memset(&a, 0, sizeof a);
    a.plan = C->plan;
    a.in_paths = C->in_paths;
    a.tmp_paths = C->out.tmp_paths;
    a.rank = C->rank;
    a.nranks = C->nranks;
    a.buffer_size = C->o.buffer_size;
    a.fsync = C->o.fsync;
    a.copy_range = C->copy_range;
    a.progress = C->rank == 0 ? C->o.progress : NULL;
    a.progress_ud = C->o.progress_ud;
    rc = sts__consolidate_data_copy(&a, bytes_local, C->diag);
    if (rc == STS_OK)
        rc = check_inputs_unchanged(C);
    /* MPI-IO consistency: after every writer closed its handles and this
     * agreement (a synchronising collective), all data is in the files. */
    rc = sts__mpiio_agree(C->comm, rc, C->diag);
    if (rc == STS_OK && a.progress) /* rank 0 only estimated the others' share */
        a.progress(a.progress_ud, C->plan->total_bytes, C->plan->total_bytes);
    return rc;
}

/* ---- 6. publish ------------------------------------------------------------- */

static int phase_publish(cons *C)
{
    return sts__publish_commit(&C->out, C->diag);
}

/* ---- entry point -------------------------------------------------------------- */

static void cons_free(cons *C)
{
    sts__publish_free(&C->out);
    for (size_t i = 0; C->in_paths && i < C->nin; i++)
        free(C->in_paths[i]);
    free(C->in_paths);
    free(C->in_names);
    free(C->map);
    free(C->setup);
    sts__meta_free(&C->meta);
    free(C->recs.buf);
    free(C->in_seen);
    if (C->comm != MPI_COMM_NULL)
        MPI_Comm_free(&C->comm);
}

static void fill_stats(const cons *C, uint64_t local, double seconds, sts_consolidate_stats *st)
{
    st->input_files = C->nin;
    st->output_files = C->plan ? C->plan->nfiles : 0;
    st->tensors = C->plan ? C->plan->ntensors : 0;
    st->bytes_total = C->plan ? C->plan->total_bytes : 0;
    st->bytes_local = local;
    st->seconds = seconds;
}

int sts_consolidate(MPI_Comm comm, const char *indir, const char *outdir,
                    const sts_consolidate_opts *opts, sts_consolidate_stats *stats, sts_diag *diag)
{
    int rc = STS_OK;
    cons C;
    sts_consolidate_opts def;
    uint64_t local = 0;
    double t0 = MPI_Wtime(), dt = 0;
    memset(&C, 0, sizeof C);
    C.comm = MPI_COMM_NULL;
    C.diag = diag;
    C.indir = indir;
    C.outdir = outdir;
    sts__diag_clear(diag);
    if (!opts) {
        sts_consolidate_opts_init(&def);
        opts = &def;
    }
    STS_CHECK(sts__mpiio_comm_dup(comm, &C.comm, diag));
    STS_MPI_CALL(diag, MPI_Comm_rank, (C.comm, &C.rank));
    STS_MPI_CALL(diag, MPI_Comm_size, (C.comm, &C.nranks));
    C.o = *opts;
    if (C.o.buffer_size == 0)
        C.o.buffer_size = STS_CONS_DEFAULT_BUFFER;
    rc = (!indir || !outdir || (opts->align % 8) != 0 || C.o.buffer_size < STS_CONS_MIN_BUFFER)
             ? sts__fail(diag, STS_E_ARG, "invalid argument (directories, align %% 8, buffer)")
             : STS_OK;
    STS_CHECK(sts__mpiio_agree(C.comm, rc, diag));
    STS_CHECK(phase_setup(&C, opts));
    STS_CHECK(phase_headers(&C));
    STS_CHECK(phase_plan(&C));
    STS_CHECK(phase_create(&C));
    STS_CHECK(phase_data(&C, &local));
    STS_CHECK(phase_publish(&C));
    dt = MPI_Wtime() - t0;
    STS_MPI_CALL(diag, MPI_Allreduce, (MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, C.comm));
    if (stats)
        fill_stats(&C, local, dt, stats);
done:
    cons_free(&C);
    if (diag)
        diag->code = rc;
    return rc;
}
