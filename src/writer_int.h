/*
 * writer_int.h - state of a sharded save, shared by writer.c (the public
 * API: mode dispatch, the one-call consolidation), writer_core.c (blocks,
 * files, data, publishing the rank files), writer_plan.c (replica
 * assignment, sharding info, stale rank files), writer_stream.c (begin /
 * put / commit: data written in pieces after the plan) and writer_direct.c
 * (direct mode).
 */
#ifndef STS_WRITER_INT_H
#define STS_WRITER_INT_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error                                                                                             \
    "writer_int.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "hashtab.h"
#include "internal.h"

/* docs/format.md §3: rank + 1, file index, file count; 5 digits, wider numbers not cut. */
#define STS_RANK_FILE_FMT "shard-%05d-model-%05u-of-%05u.safetensors"

/* One block added by this rank. */
typedef struct sts__writer_block {
    char *name;
    sts_dtype dtype;
    uint32_t ndim;
    uint64_t *dims;   /* 3 * ndim: global shape, offsets, block shape */
    const void *data; /* borrowed from the caller until commit; NULL: sts_writer_put */
    uint64_t nbytes;
    int whole; /* offsets all 0 and shape == global shape: maybe replicated */
    int keep;  /* this rank stores the block */
    unsigned file;
} sts__writer_block;

/* One output file of this rank: blocks order[first .. first + nblocks). */
typedef struct sts__writer_file {
    unsigned index;
    size_t first, nblocks;
    char *final_path, *tmp_path;
} sts__writer_file;

struct sts_writer {
    MPI_Comm comm; /* duplicate of the caller's, MPI_ERRORS_RETURN */
    int rank, nranks;
    char *dir;
    sts_save_opts opts;

    sts__writer_block *blocks;
    size_t count, cap;
    sts__hashtab names; /* name -> index into blocks */

    sts__writer_block **order; /* kept blocks by (file, canonical order) */
    size_t norder;
    sts__writer_file *files;
    size_t nfiles, renamed;

    uint64_t bytes_local, bytes_total, done_local;
    /* Saving into a Hugging Face checkpoint: one call (writer.c) or direct (writer_direct.c). */
    int made_dir; /* rank 0: this commit created dir (removed again with the rank files) */
    uint64_t out_files, out_tensors, out_bytes;
    double cons_seconds;

    /* Streaming save (writer_stream.c): begun by sts_writer_begin, on every rank alike;
     * stream exists from a successful begin until free. */
    int begun;
    struct sts__writer_stream *stream;

    int add_rc; /* first failure of sts_writer_add (or _begin, _put), reported by commit */
    sts_diag add_diag;
    int committed;
    sts_diag diag;
};

/*
 * A staging buffer for independent writes to one open file: small pieces
 * that follow each other in the file are gathered into one write; pieces of
 * STS_WRITER_STAGE_DIRECT bytes or more go straight from the caller's memory.
 */
#define STS_WRITER_STAGE_DIRECT ((uint64_t)1 << 20)
#define STS_WRITER_STAGE_CAP    ((uint64_t)16 << 20)
typedef struct sts__writer_stager {
    MPI_File fh;
    char *buf;
    uint64_t cap, len, off; /* off: file offset of buf[0] */
    sts_diag *diag;
} sts__writer_stager;

/* ---- writer_core.c: blocks --------------------------------------------- */

/*
 * Local.  Checks block b (name, dtype, shape, placement) and adds a copy of
 * its description to w (the data stays borrowed).  Errors in w->diag; the
 * caller remembers them.
 */
int sts__writer_core_add(sts_writer *w, const sts_block *b);

/* Local.  Index of this rank's block named name, or -1. */
long sts__writer_core_find(const sts_writer *w, const char *name);

/* Local.  Keeps rc (and w->diag) as the failure the commit reports, unless one is kept. */
void sts__writer_core_remember(sts_writer *w, int rc);

/* Local.  Frees this rank's file list (names included). */
void sts__writer_core_free_files(sts_writer *w);

/* Local.  Frees the blocks, the name table, the order and the files. */
void sts__writer_core_free(sts_writer *w);

/* ---- writer_core.c: the phases of a commit ------------------------------ */

/*
 * Collective.  The planning part of a commit: agreement on rc (the caller's
 * own checks so far) and on a remembered add failure, the directory, the
 * replica assignment, plan_files (w->order, w->files), the check for rank
 * files already there and the free-space check.  Agreed.
 */
int sts__writer_core_prepare(sts_writer *w, int rc);

/* Local (no MPI traffic).  Writes every file of this rank under its temporary name. */
int sts__writer_core_write_files(sts_writer *w);

/*
 * Collective.  The end of a commit whose rank files are written (rc: this
 * rank's result, files closed): waits for every rank, agrees, then publishes
 * them (or removes every temporary file).  Agreed.
 */
int sts__writer_core_finish(sts_writer *w, int rc);

/* Collective.  The final progress report and the agreed statistics of a save that succeeded. */
int sts__writer_core_stats(sts_writer *w, double t0, sts_save_stats *stats);

/* Local.  Removes this rank's temporary files and the final names it renamed into place. */
void sts__writer_core_cleanup(sts_writer *w);

/* ---- writer_core.c: data ------------------------------------------------ */

/*
 * Local.  The header of file f (canonical, with the DCP metadata): *hdr is
 * the encoded prefix and header (sts_free), *hlen its size, begin[i] the
 * data offset of block order[f->first + i] relative to the data section.
 */
int sts__writer_core_encode_header(sts_writer *w, const sts__writer_file *f, void **hdr,
                                   size_t *hlen, uint64_t *begin);

/* Local.  The staging buffer size for this rank's kept blocks (after the plan). */
uint64_t sts__writer_core_stage_cap(const sts_writer *w);

/* Local.  Writes len bytes at off (independent MPI-IO), staged when small. */
int sts__writer_core_stage_put(sts__writer_stager *s, uint64_t off, const void *p, uint64_t len);
/* Local.  Writes what is staged. */
int sts__writer_core_stage_flush(sts__writer_stager *s);

/*
 * Local.  A short write or generic I/O error (rc == STS_E_IO) with less room
 * left on the directory's file system than the file still needed from byte
 * `at` to `file_end` becomes STS_E_NOSPACE, with both numbers in the message.
 */
int sts__writer_core_classify_io(sts_writer *w, int rc, uint64_t at, uint64_t file_end);

/* Local.  Adds bytes to this rank's progress and reports on rank 0. */
void sts__writer_core_progress(sts_writer *w, uint64_t bytes);

/*
 * Local.  The output options of a consolidating or direct save: opts.consolidate
 * or the defaults, with the mapping, fsync, force and progress of the save
 * opts merged in as stshard.h describes.
 */
void sts__writer_core_cons_opts(const sts_writer *w, sts_consolidate_opts *o);

/* ---- writer_plan.c ------------------------------------------------------ */

/*
 * Collective.  Gathers every rank's whole-tensor blocks, checks that ranks
 * holding the same name agree on dtype and global shape, and gives each
 * such tensor to exactly one holder: largest first, to the holder with the
 * fewest bytes so far (ties: lowest rank).  Clears `keep` on this rank's
 * blocks that another rank stores; sets bytes_local and bytes_total.
 * Ends with an agreement.
 */
int sts__writer_plan_resolve_replicas(sts_writer *w);

/*
 * Local.  DCP_SHARDING_INFO for file f: {"<name>": {"saved_offsets": [..]}, ...}
 * in the file's canonical order, with Python json.dumps' default spacing and
 * escaping (ensure_ascii).  *out is malloc'd.
 */
int sts__writer_plan_sharding_json(sts_writer *w, const sts__writer_file *f, char **out);

/*
 * Local (does something on rank 0 only).  Lists the directory: without
 * opts.force any rank file there is STS_E_EXIST, since the new checkpoint
 * would be mixed with an old one.  Not agreed.
 */
int sts__writer_plan_check_dir(sts_writer *w);

/*
 * Collective.  With opts.force, rank 0 removes the rank files in the
 * directory that this save did not produce (left by an earlier save with
 * other ranks or another mapping).  No-op without force.  Not agreed: the
 * caller agrees on the result.
 */
int sts__writer_plan_remove_stale(sts_writer *w);

/* ---- writer_stream.c ---------------------------------------------------- */

/* Collective, agreed.  sts_writer_begin (w not NULL, w->diag cleared). */
int sts__writer_stream_begin(sts_writer *w);

/* Local.  sts_writer_stores. */
int sts__writer_stream_stores(const sts_writer *w, const char *name, int *stores);

/* Local.  sts_writer_put (w not NULL, w->diag cleared). */
int sts__writer_stream_put(sts_writer *w, const char *name, uint64_t off, const void *data,
                           uint64_t len);

/*
 * Local.  The data part of sts_writer_commit after sts_writer_begin, on its
 * first call: checks that every declared block got its bytes, writes the
 * blocks added with data, syncs (opts.fsync) and closes the files.  Returns
 * this rank's result (not agreed) and in *t0 the start of the save.
 */
int sts__writer_stream_end(sts_writer *w, double *t0);

/* Local.  Frees the streaming state; files still open are closed and removed. */
void sts__writer_stream_free(sts_writer *w);

/* ---- writer_direct.c ---------------------------------------------------- */

/*
 * Collective.  Direct mode, after the replicas are resolved and plan_files
 * ordered this rank's kept blocks as its rank files would hold them: plans
 * the consolidated checkpoint from every rank's blocks and writes it into
 * w->dir.  Agreed.
 */
int sts__writer_direct_commit(sts_writer *w);

#endif /* STS_WRITER_INT_H */
