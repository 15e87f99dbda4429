/*
 * writer_direct.h - state of a direct save (opts.direct), shared by
 * writer_direct.c (records, plan, publish) and writer_direct_io.c (what this
 * rank writes where, and the writes).
 */
#ifndef STS_WRITER_DIRECT_H
#define STS_WRITER_DIRECT_H

#include "layer.h"
#if STS_LAYER < STS_LAYER_OPS
#error                                                                                             \
    "writer_direct.h belongs to the operations layer (src/layer.h); a lower layer may not include it"
#endif

#include "consolidate.h"
#include "meta.h"
#include "publish.h"
#include "writer_int.h"

/* Where a fetched block (of an exchanged tensor) lies: a rank's memory. */
typedef struct sts__dinfo {
    int rank;
    size_t local; /* index in that rank's w->blocks */
} sts__dinfo;

/* sts_plan_tensor.flags of a direct save: the tensor goes through the exchange. */
#define STS_DIRECT_FLAG_AGG 1u

/* How one of this rank's blocks reaches its output file. */
typedef enum sts__dkind {
    STS_DIRECT_CONTIG = 0, /* one contiguous run: an independent write */
    STS_DIRECT_RUNS,       /* strided, runs of at least STS_DIRECT_RUN_MIN: one write per run */
    STS_DIRECT_VIEW,       /* strided, small runs: collective writes through a file view */
    STS_DIRECT_AGG         /* part of an exchanged tensor: written by the rank owning its rows */
} sts__dkind;

/* Runs this large are written one by one: each is already a large transfer. */
#define STS_DIRECT_RUN_MIN ((uint64_t)1 << 20)
/* Bytes of one rank in one collective round (bounds MPI's per-call bookkeeping). */
#define STS_DIRECT_ROUND ((uint64_t)256 << 20)

typedef struct sts__dpiece {
    uint32_t file; /* output file (plan index) */
    sts__dkind kind;
    size_t tensor;                /* plan tensor */
    const sts__writer_block *src; /* this rank's block */
    const unsigned char *data;
    uint64_t start; /* absolute file offset of the block's first byte */
    uint64_t nbytes;
} sts__dpiece;

typedef struct sts__dsave {
    sts_writer *w;
    MPI_Comm comm;
    int rank, nranks;
    sts_diag *diag;
    sts_consolidate_opts co; /* output options (sts__writer_core_cons_opts) */
    sts_plan_map_entry *map;
    size_t nmap;
    sts_plan_opts po; /* the layout's options: rank 0 encodes each header with them */

    size_t *rec_local; /* per record of this rank (pack order): its index in w->blocks */
    size_t nrecs;
    int *file_rank;   /* rank of each numbered input (rank file that is not written) */
    char **src_names; /* "rank R", for the planner's messages */
    size_t nsrc;

    sts_meta meta;        /* every tensor; the blocks of the exchanged ones (meta.c) */
    sts_meta_save sv;     /* the direct save's part of the plane; sv.kept per record */
    const sts_plan *plan; /* meta.plan */
    sts__dinfo *info;     /* per fetched block (meta.blocks) */

    sts__publish out;

    int exchange;        /* strided tensors by exchange (default) or through file views */
    sts__dpiece *pieces; /* this rank's writes, by (file, start) */
    size_t npieces;
    uint64_t *rounds; /* per output file: collective rounds, agreed (max over ranks) */
    uint64_t round;   /* this rank's bytes per round (STS_DIRECT_ROUND unless overridden) */
    uint64_t budget;  /* bytes of one exchange chunk: half the buffer */
    uint64_t written; /* tensor data bytes this rank wrote */
} sts__dsave;

typedef sts__dsave dsave;

/*
 * Local, on a tensor's owner (sts_meta_save.flags; ctx is the dsave):
 * STS_DIRECT_FLAG_AGG when the tensor goes through the exchange, that is
 * when D->exchange is on and any of its kept blocks is strided with small
 * runs.
 */
uint32_t sts__writer_direct_io_flags(const void *ctx, const sts_plan_summary *s,
                                     const sts_plan_block *blocks, const size_t *order);

/* Local.  Lists this rank's pieces: its records the planner kept, in tensors the plan writes. */
int sts__writer_direct_io_pieces(dsave *D);

/*
 * Collective (not agreed: the caller agrees).  The settings from the
 * environment, as rank 0 sees them, on every rank: STSHARD_DIRECT_STRIDED
 * (=view: strided blocks through file views instead of the exchange) into
 * D->exchange and STSHARD_DIRECT_ROUND into D->round.  Other ranks'
 * environments are ignored: they would choose different collectives.
 */
int sts__writer_direct_io_settings(dsave *D);

/*
 * Collective (not agreed: the caller agrees).  The exchange rounds of output
 * file f, on the open handle fh: the rows of every exchanged tensor of f are
 * split evenly over the ranks; in each round every rank assembles its next
 * chunk of at most half the buffer from the blocks of all ranks
 * (MPI_Alltoallw straight from the owners' memory) and writes it with one
 * independent write.  rc is this rank's code so far; a failed rank keeps
 * joining until every rank has seen the failure.
 */
int sts__writer_direct_agg_exchange(dsave *D, MPI_File fh, uint32_t f, int rc);

/*
 * Collective, agreed.  Writes every output file under its temporary name:
 * per file a collective open (rank 0 writes the header), this rank's
 * contiguous pieces as independent writes, then the agreed number of
 * collective rounds for the strided ones, then a collective close.
 */
int sts__writer_direct_io_write(dsave *D);

#endif /* STS_WRITER_DIRECT_H */
