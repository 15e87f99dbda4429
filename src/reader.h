/*
 * reader.h - the reader's private state, shared by reader.c (open, tensor
 * table) and reader_io.c (request validation and offset reads).
 */
#ifndef STS_READER_H
#define STS_READER_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error "reader.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include <mpi.h>

#include "bytes.h"
#include "internal.h"

/* One stored block of a tensor. */
typedef struct sts__rblock {
    uint32_t file;           /* index into the reader's file list */
    uint64_t data_off;       /* absolute byte offset of the block's first byte in the file */
    const uint64_t *offsets; /* ndim entries: block start in the global tensor */
    const uint64_t *shape;   /* ndim entries */
} sts__rblock;

/* A tensor table: tensors in name order, each with its stored blocks. */
typedef struct sts__rtable {
    size_t ntensors;
    sts_global_tensor *tensors;
    size_t *first; /* tensor i: blocks[first[i] .. first[i + 1]) */
    sts__rblock *blocks;
    uint64_t *gshapes; /* storage of the global shapes */
} sts__rtable;

struct sts_reader {
    MPI_Comm comm; /* our duplicate; every collective of the reader runs on it */
    MPI_Info info; /* hints for MPI_File_open (ours plus the caller's) */
    int rank;
    int nranks;
    sts_ckpt_kind kind;
    int view_mode;            /* strided file sides through a subarray view instead of exact runs */
    int exchange;             /* two-phase reads in sts_reader_read (reader_xchg.c) */
    uint64_t exchange_buffer; /* staging bytes per rank and round of the two-phase reads */
    int dist;                 /* distributed metadata (reader_meta.c) */

    size_t nfiles;
    char **paths;
    MPI_File *fh; /* opened lazily with MPI_COMM_SELF; MPI_FILE_NULL until needed */
    size_t nopen;

    size_t ntensors;
    sts_global_tensor *tensors; /* sorted by name */
    size_t *first;              /* tensor i owns blocks[first[i] .. first[i + 1]) */
    sts__rblock *blocks;        /* distributed: only the blocks fetched for the current read */
    uint64_t *gshapes;          /* storage of the global shapes */
    unsigned char *records;     /* every rank's header records (distributed: every tensor's
                                 * summary); names and shapes point here */
    size_t records_len;

    /* Distributed metadata only (reader_meta.c). */
    sts__rtable own;            /* the tensors this rank owns, with all their blocks */
    unsigned char *own_records; /* their block records, which own's blocks point into */
    size_t *own_of;             /* per tensor: its index in own, or SIZE_MAX */
    uint32_t *file0;            /* per tensor: the file of its first block */
    unsigned char *fetched;     /* the block records behind first/blocks in a read */

    unsigned char *bounce; /* reader_io.c's buffer for gathering small runs; NULL until needed */
    unsigned char *stage;  /* reader_xchg.c's staging buffer, kept across calls: a fresh large
                            * buffer per call would fault in every page again */
    uint64_t stage_cap;

    sts_read_stats stats;
    sts_diag diag;
};

/* A list of malloc'd strings. */
typedef struct sts__strlist {
    char **v;
    size_t n;
    size_t cap;
} sts__strlist;

/* Local.  Frees the strings and the list; leaves it empty. */
void sts__ckptdir_strlist_free(sts__strlist *l);

/*
 * Local (rank 0).  Decides what path holds and lists its files (paths).  For
 * an index checkpoint *index receives the parsed index (free with
 * sts__ckptdir_index_free) for sts__ckptdir_check_index.  A directory's form
 * is ckptscan.c's.  Errors: STS_E_NOENT, STS_E_ACCESS, STS_E_IO,
 * STS_E_EMPTY_INPUT, STS_E_AMBIGUOUS_INPUT, STS_E_INDEX, STS_E_NOMEM.
 */
int sts__ckptdir_discover(const char *path, sts_ckpt_kind *kind, sts__strlist *files, void **index,
                          sts_diag *diag);
/* Local.  The index's weight_map names every tensor exactly once, each in its real file. */
int sts__ckptdir_check_index(const sts_reader *r, const void *index, sts_diag *diag);
void sts__ckptdir_index_free(void *index);

/*
 * Which tensor an open error is about (pass 1: identical boxes with two
 * dtypes, found before any pass 2: one tensor's blocks; pass 0: not about a
 * tensor; 3: no error), so that owners can agree on the error one table of
 * every block would report first.
 */
typedef struct sts__rfail {
    int pass;
    const char *name;
    size_t len;
} sts__rfail;

/*
 * Local.  Builds a table from header records (len bytes, the layout
 * reader.c packs): blocks sorted by tensor, identical duplicates dropped,
 * global shapes and coverage checked.  Names and block boxes point into
 * records.  f (may be NULL) says what failed.  On error tb holds what was
 * built; free it either way with sts__reader_table_free.
 */
int sts__reader_table(const sts_reader *r, const unsigned char *records, size_t len,
                      sts__rtable *tb, sts__rfail *f, sts_diag *diag);
/* Local.  Frees the arrays (not the records) and zeroes tb. */
void sts__reader_table_free(sts__rtable *tb);
/* Local.  The file that holds tensor t's first block. */
uint32_t sts__reader_file0(const sts_reader *r, size_t t);

/*
 * reader_meta.c: distributed metadata.  Collective, agreed (the first error
 * a single table would report, prefixed with path): mine (this rank's packed
 * headers, consumed) goes to the tensors' owners, which build their tables;
 * every rank then receives every tensor's summary into r->tensors.
 */
int sts__reader_meta_open(sts_reader *r, int rc, sts_bytes *mine, const char *path, sts_diag *diag);

/* One box of a tensor whose blocks a read needs. */
typedef struct sts__rbox {
    size_t tix;
    const uint64_t *off, *shape;
} sts__rbox;

/*
 * Collective, agreed.  Replaces the view (r->first, r->blocks) with the
 * stored blocks that meet any of the n boxes, fetched from their owners, in
 * table order.  Ranks that pass the same boxes get the same view.
 */
int sts__reader_meta_fetch(sts_reader *r, int rc, const sts__rbox *boxes, size_t n, sts_diag *diag);
/* Local.  Drops the view. */
void sts__reader_meta_drop(sts_reader *r);
/* Local.  Frees everything reader_meta.c made (and the view). */
void sts__reader_meta_free(sts_reader *r);

/* Local.  Opens file i on this rank if needed (MPI_COMM_SELF, read-only). */
int sts__reader_file(sts_reader *r, uint32_t i, MPI_File *fh, sts_diag *diag);
/* Local.  Closes every file this rank opened. */
int sts__reader_close_files(sts_reader *r, sts_diag *diag);

/*
 * Local.  Reads the intersection box ext[] of one stored block into a
 * request buffer.  The file side is the block: an array of shape fshape whose
 * first byte is at file offset fbase, box starting at fstart.  The memory side
 * is the request: an array of shape mshape at mbase, box starting at mstart.
 * esize is the byte size of one element (after sub-byte grouping).  Only the
 * bytes of the box are read; the reader's hints, mode, bounce buffer and
 * counters are used.
 */
typedef struct sts__box {
    uint32_t ndim;
    uint64_t esize;
    const uint64_t *ext;
    const uint64_t *fshape;
    const uint64_t *fstart;
    uint64_t fbase;
    const uint64_t *mshape;
    const uint64_t *mstart;
    unsigned char *mbase;
} sts__box;

int sts__reader_io_box(sts_reader *r, MPI_File fh, const sts__box *box, sts_diag *diag);

/*
 * reader_xchg.c: two-phase reads.  A plan says which stored blocks the ranks
 * read together (large contiguous reads, then MPI_Alltoallw) instead of each
 * reading its own strided runs.
 */
typedef struct sts__xplan sts__xplan;

/*
 * Collective.  Gathers every rank's requests (already checked and agreed
 * valid) and plans the two-phase reads; every rank gets the same plan.
 * Errors (STS_E_NOMEM, STS_E_MPI) are not agreed.
 */
int sts__reader_xchg_make(sts_reader *r, const sts_read_req *reqs, size_t n, sts__xplan **out,
                          sts_diag *diag);
/* Local.  1 when stored block blk (index into r->blocks) is read by the plan. */
int sts__reader_xchg_skips(const sts__xplan *p, size_t blk);
/*
 * Collective.  Runs the plan's rounds; rc is this rank's result so far and
 * joins every round's agreement.  Returns this rank's result, which the
 * caller must still agree on (the last round's exchange may fail locally).
 */
int sts__reader_xchg_run(sts_reader *r, const sts__xplan *p, int rc, sts_diag *diag);
/* Local.  NULL is a no-op. */
void sts__reader_xchg_free(sts__xplan *p);

#endif /* STS_READER_H */
