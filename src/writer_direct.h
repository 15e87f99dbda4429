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
#include "publish.h"
#include "writer_int.h"

/* Where a gathered block record came from. */
typedef struct sts__dinfo {
    int rank;
    size_t local;           /* index in that rank's w->blocks */
    const uint64_t *gshape; /* the global shape it declares */
} sts__dinfo;

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
    size_t tensor; /* plan tensor */
    size_t block;  /* gathered record */
    const unsigned char *data;
    uint64_t start; /* absolute file offset of the block's first byte */
    uint64_t nbytes;
} sts__dpiece;

/* A name and where it comes from, for the sorted walks of the global shape checks. */
typedef struct sts__named {
    const char *name;
    size_t len, at;
} sts__named;

typedef struct sts__dsave {
    sts_writer *w;
    MPI_Comm comm;
    int rank, nranks;
    sts_diag *diag;
    sts_consolidate_opts co; /* output options (sts__writer_core_cons_opts) */
    sts_plan_map_entry *map;
    size_t nmap;

    unsigned char *recs; /* every rank's records, gathered */
    sts_plan_block *blocks;
    sts__dinfo *info;
    size_t nblocks;
    int *file_rank;   /* rank of each numbered input (rank file that is not written) */
    char **src_names; /* "rank R", for the planner's messages */
    size_t nsrc;
    sts__named *byname; /* the records sorted by name */

    sts_plan *plan;
    sts__publish out;

    int exchange;        /* strided tensors by exchange (default) or through file views */
    unsigned char *agg;  /* per plan tensor: 1 when it goes through the exchange */
    sts__dpiece *pieces; /* this rank's writes, by (file, start) */
    size_t npieces;
    uint64_t *rounds; /* per output file: collective rounds, agreed (max over ranks) */
    uint64_t round;   /* this rank's bytes per round (STS_DIRECT_ROUND unless overridden) */
    uint64_t budget;  /* bytes of one exchange chunk: half the buffer */
    uint64_t written; /* tensor data bytes this rank wrote */
} sts__dsave;

typedef sts__dsave dsave;
typedef sts__named named;

/* Local.  Lists this rank's pieces: the kept blocks of the plan that are its own. */
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
