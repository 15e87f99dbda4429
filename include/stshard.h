/*
 * stshard.h - the whole public API of libstshard.
 *
 * libstshard saves model checkpoints as sharded safetensors files with MPI-IO,
 * consolidates them into Hugging Face checkpoints, and reads any block of any
 * tensor with offset reads.  File formats: docs/format.md.
 *
 * Conventions used throughout:
 *  - Every function that can fail returns int: STS_OK (0) or a negative
 *    STS_E_* code.  The library never exits, aborts or calls MPI_Abort.
 *  - "Collective over comm" means every rank of the communicator must make
 *    the call, with the same arguments where stated; every rank then returns
 *    the same code (errors are agreed with MPI_Allreduce).  "Local" means no
 *    communication happens.
 *  - Opaque handles come in create/free pairs; every free accepts NULL.
 *  - Details of a failure are in the handle's message (sts_*_errmsg) or in the
 *    caller's sts_diag, which every stateless call accepts (NULL to ignore).
 */
#ifndef STSHARD_H
#define STSHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STS_VERSION_MAJOR  0
#define STS_VERSION_MINOR  1
#define STS_VERSION_PATCH  0
#define STS_VERSION_NUMBER (STS_VERSION_MAJOR * 10000 + STS_VERSION_MINOR * 100 + STS_VERSION_PATCH)

/* Local.  The version the library was built as (compare with STS_VERSION_NUMBER). */
unsigned sts_version_number(void);
/* Local.  "MAJOR.MINOR.PATCH"; static storage. */
const char *sts_version_string(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * One list gives the enum, the names and the messages.  Values are pinned:
 * a code is never renumbered or reused.  The format rule codes carry the names
 * of the reference safetensors loader's errors, so messages match its wording.
 *   X(enum name, value, symbolic name, message)
 */
#define STS_ERROR_LIST(X)                                                                          \
    X(STS_OK, 0, "Ok", "success")                                                                  \
    X(STS_E_ARG, -1, "InvalidArgument", "invalid argument")                                        \
    X(STS_E_NOMEM, -2, "OutOfMemory", "out of memory")                                             \
    X(STS_E_IO, -3, "IoError", "I/O error")                                                        \
    X(STS_E_MPI, -4, "MpiError", "MPI error")                                                      \
    X(STS_E_INTERNAL, -5, "InternalError", "internal error")                                       \
    X(STS_E_NOENT, -6, "NotFound", "no such file or directory")                                    \
    X(STS_E_ACCESS, -7, "PermissionDenied", "permission denied")                                   \
    X(STS_E_NOSPACE, -8, "NoSpace", "no space left on device")                                     \
    X(STS_E_EXIST, -9, "AlreadyExists", "output already exists")                                   \
    X(STS_E_PEER, -10, "PeerFailed", "another rank failed")                                        \
    X(STS_E_UNSUPPORTED, -11, "Unsupported", "unsupported feature")                                \
    X(STS_E_USAGE, -12, "Usage", "invalid usage")                                                  \
    X(STS_E_HEADER_TOO_SMALL, -20, "HeaderTooSmall", "file is shorter than the 8-byte header")     \
    X(STS_E_HEADER_TOO_LARGE, -21, "HeaderTooLarge", "header length exceeds 100,000,000 bytes")    \
    X(STS_E_INVALID_HEADER_LENGTH, -22, "InvalidHeaderLength",                                     \
      "header length runs past the end of the file")                                               \
    X(STS_E_INVALID_HEADER, -23, "InvalidHeader", "header is not valid UTF-8")                     \
    X(STS_E_INVALID_HEADER_DESERIALIZATION, -24, "InvalidHeaderDeserialization",                   \
      "header is not a valid safetensors JSON object")                                             \
    X(STS_E_INVALID_OFFSET, -25, "InvalidOffset", "tensor data offsets leave a hole or overlap")   \
    X(STS_E_VALIDATION_OVERFLOW, -26, "ValidationOverflow",                                        \
      "element or byte count overflows 64 bits")                                                   \
    X(STS_E_MISALIGNED_SLICE, -27, "MisalignedSlice",                                              \
      "tensor size is not a whole number of bytes")                                                \
    X(STS_E_TENSOR_INVALID_INFO, -28, "TensorInvalidInfo",                                         \
      "tensor data span does not match dtype and shape")                                           \
    X(STS_E_METADATA_INCOMPLETE_BUFFER, -29, "MetadataIncompleteBuffer",                           \
      "data section size does not match the tensors")                                              \
    X(STS_E_DUPLICATE_NAME, -30, "DuplicateName", "a name appears twice")                          \
    X(STS_E_RESERVED_NAME, -31, "ReservedName", "a tensor is named __metadata__")                  \
    X(STS_E_UNKNOWN_KEY, -32, "UnknownKey", "unknown key in a tensor entry")                       \
    X(STS_E_SHARDING_INFO, -40, "InvalidShardingInfo", "DCP_SHARDING_INFO is missing or invalid")  \
    X(STS_E_COVERAGE_GAP, -41, "CoverageGap", "blocks leave part of a tensor uncovered")           \
    X(STS_E_COVERAGE_OVERLAP, -42, "CoverageOverlap", "blocks of a tensor overlap")                \
    X(STS_E_DTYPE_MISMATCH, -43, "DtypeMismatch", "blocks of one tensor disagree on dtype")        \
    X(STS_E_MAPPING, -44, "InvalidMapping", "tensor-to-file mapping is invalid or incomplete")     \
    X(STS_E_INDEX, -45, "InvalidIndex", "model.safetensors.index.json is invalid or inconsistent") \
    X(STS_E_NO_TENSOR, -46, "TensorNotFound", "no such tensor")                                    \
    X(STS_E_BLOCK_RANGE, -47, "BlockOutOfRange", "block lies outside the tensor")                  \
    X(STS_E_EMPTY_INPUT, -48, "NoInput", "no safetensors files found")                             \
    X(STS_E_AMBIGUOUS_INPUT, -49, "AmbiguousInput",                                                \
      "directory holds both a Hugging Face checkpoint and rank files")

#define STS_ERROR_ENUM_ITEM_(e, v, name, msg) e = v,
typedef enum sts_error { STS_ERROR_LIST(STS_ERROR_ENUM_ITEM_) STS_E_MIN_ = -50 } sts_error;
#undef STS_ERROR_ENUM_ITEM_

/* Local.  A static, human-readable message for code (never NULL). */
const char *sts_strerror(int code);
/* Local.  The symbolic name of code, e.g. "InvalidOffset" (never NULL). */
const char *sts_errname(int code);
/*
 * Local.  The process exit status the stshard tool uses for code:
 * 0 ok, 1 invalid input, 2 usage, 3 I/O error, 4 internal error.
 */
int sts_exit_status(int code);

/* Caller-owned detail for stateless calls.  code repeats the return value. */
typedef struct sts_diag {
    int code;
    char message[1024];
} sts_diag;

/* ------------------------------------------------------------------------ */
/* Dtypes                                                                    */
/* ------------------------------------------------------------------------ */

/* The safetensors dtypes.  The enum value is the reference writer's rank. */
typedef enum sts_dtype {
    STS_BOOL = 0,
    STS_F4,
    STS_F6_E2M3,
    STS_F6_E3M2,
    STS_U8,
    STS_I8,
    STS_F8_E5M2,
    STS_F8_E4M3,
    STS_F8_E8M0,
    STS_F8_E4M3FNUZ,
    STS_F8_E5M2FNUZ,
    STS_I16,
    STS_U16,
    STS_F16,
    STS_BF16,
    STS_I32,
    STS_U32,
    STS_F32,
    STS_C64,
    STS_F64,
    STS_I64,
    STS_U64,
    STS_DTYPE_COUNT
} sts_dtype;

/* Local.  The dtype's name as written in headers ("BF16"), or NULL if out of range. */
const char *sts_dtype_name(sts_dtype dt);
/* Local.  Bits per element (4, 6, 8, 16, 32 or 64), or 0 if out of range. */
unsigned sts_dtype_bits(sts_dtype dt);
/*
 * Local.  Looks up a dtype by its header name (len bytes, not NUL-terminated).
 * Returns STS_OK, or STS_E_ARG for an unknown name.
 */
int sts_dtype_from_name(const char *name, size_t len, sts_dtype *out);
/*
 * Local.  Byte size of numel elements of dt.  Returns STS_OK,
 * STS_E_VALIDATION_OVERFLOW, or STS_E_MISALIGNED_SLICE when numel * bits is
 * not a multiple of 8 (sub-byte dtypes).
 */
int sts_dtype_nbytes(sts_dtype dt, uint64_t numel, uint64_t *nbytes);

/* ------------------------------------------------------------------------ */
/* Header codec (local, no MPI)                                              */
/* ------------------------------------------------------------------------ */

/* The largest header the reference loader accepts, in bytes. */
#define STS_MAX_HEADER_SIZE 100000000ULL

typedef struct sts_header sts_header;

/* One tensor entry of a parsed header.  All pointers are owned by the header. */
typedef struct sts_tensor_info {
    const char *name; /* UTF-8, NUL-terminated */
    size_t name_len;  /* bytes; a name may contain U+0000 */
    sts_dtype dtype;
    uint32_t ndim;         /* 0 for a scalar */
    const uint64_t *shape; /* ndim entries */
    uint64_t begin;        /* data_offsets, relative to the data section */
    uint64_t end;
    const uint64_t *saved_offsets; /* ndim entries after sts_header_decode_sharding, else NULL */
} sts_tensor_info;

/*
 * Local.  Parses and validates a header: json/len are the N bytes after the
 * 8-byte length prefix.  data_size is the byte count of the data section
 * (file size - 8 - N), or UINT64_MAX when unknown, which skips the
 * MetadataIncompleteBuffer check.  On success *out owns a new header (free
 * with sts_header_free).  Errors: STS_E_INVALID_HEADER,
 * STS_E_INVALID_HEADER_DESERIALIZATION, STS_E_INVALID_OFFSET,
 * STS_E_VALIDATION_OVERFLOW, STS_E_MISALIGNED_SLICE,
 * STS_E_TENSOR_INVALID_INFO, STS_E_METADATA_INCOMPLETE_BUFFER,
 * STS_E_DUPLICATE_NAME, STS_E_RESERVED_NAME, STS_E_UNKNOWN_KEY, STS_E_NOMEM.
 * diag (may be NULL) names the tensor or the byte offset in the JSON.
 */
int sts_header_parse(const void *json, size_t len, uint64_t data_size, sts_header **out,
                     sts_diag *diag);

/*
 * Local (POSIX reads).  Reads and fully validates the header of the
 * safetensors file at path, including every check on the 8-byte prefix
 * (HeaderTooSmall, HeaderTooLarge, InvalidHeaderLength) and the file size.
 * *data_start (may be NULL) receives 8 + N.  Errors: those of
 * sts_header_parse plus STS_E_HEADER_TOO_SMALL, STS_E_HEADER_TOO_LARGE,
 * STS_E_INVALID_HEADER_LENGTH, STS_E_NOENT, STS_E_ACCESS, STS_E_IO.  The
 * diag message starts with the path.
 */
int sts_header_read_file(const char *path, sts_header **out, uint64_t *data_start, sts_diag *diag);

/*
 * Local.  Validates the 8-byte length prefix against the file size: returns
 * the header length in *n, or STS_E_HEADER_TOO_SMALL, STS_E_HEADER_TOO_LARGE,
 * STS_E_INVALID_HEADER_LENGTH.  prefix may be NULL when file_size < 8.
 */
int sts_header_check_prefix(const unsigned char *prefix, uint64_t file_size, uint64_t *n);

/* Local.  Frees h; NULL is a no-op. */
void sts_header_free(sts_header *h);

/* Local.  Number of tensors. */
size_t sts_header_count(const sts_header *h);
/* Local.  Tensor i (0 <= i < count) in data-offset order; NULL if out of range. */
const sts_tensor_info *sts_header_tensor(const sts_header *h, size_t i);
/* Local.  Index of the tensor named name (len bytes), or -1. */
long sts_header_find(const sts_header *h, const char *name, size_t len);
/* Local.  End of the last tensor: the data section's size. */
uint64_t sts_header_data_size(const sts_header *h);

/* Local.  Number of __metadata__ entries (0 when absent or null). */
size_t sts_header_meta_count(const sts_header *h);
/* Local.  Entry i of __metadata__ in file order; pointers owned by h. */
int sts_header_meta_at(const sts_header *h, size_t i, const char **key, const char **value);
/* Local.  Value of __metadata__[key], or NULL. */
const char *sts_header_meta_get(const sts_header *h, const char *key);

/*
 * Local.  Decodes __metadata__["DCP_SHARDING_INFO"] (any JSON spacing) and
 * attaches each tensor's saved_offsets.  Every tensor must have an entry with
 * one offset per dimension, and every entry must name a tensor of the header.
 * Errors: STS_E_SHARDING_INFO (absent or malformed; diag names the tensor),
 * STS_E_NOMEM.
 */
int sts_header_decode_sharding(sts_header *h, sts_diag *diag);

/* Output header layouts (docs/format.md). */
typedef enum sts_layout {
    STS_LAYOUT_CANONICAL = 0, /* reference writer: dtype rank desc, name asc, 8-byte padding */
    STS_LAYOUT_PYTORCH = 1    /* PyTorch consolidate: given order, Python spacing, no padding */
} sts_layout;

/* A tensor to encode.  Pointers are borrowed for the duration of the call. */
typedef struct sts_tensor_desc {
    const char *name; /* NUL-terminated UTF-8 */
    sts_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape;
} sts_tensor_desc;

/* One __metadata__ entry.  Pointers are borrowed for the duration of the call. */
typedef struct sts_meta_entry {
    const char *key;
    const char *value;
} sts_meta_entry;

/*
 * Local.  Encodes a header for n tensors in the given layout.  In the canonical
 * layout __metadata__ entries are written in key order (bytewise).  align is
 * 0 (none) or the boundary, a multiple of 8, on which the data section must
 * start; the header is padded with spaces to reach it.  On success *buf is a
 * new malloc'd buffer (free with sts_free) holding the 8-byte prefix and the
 * header, *buf_len its size (= data section start), and begin[i] / end[i]
 * receive tensor i's data offsets (in the caller's order).  Errors:
 * STS_E_ARG, STS_E_DUPLICATE_NAME, STS_E_RESERVED_NAME,
 * STS_E_VALIDATION_OVERFLOW, STS_E_MISALIGNED_SLICE, STS_E_HEADER_TOO_LARGE,
 * STS_E_NOMEM.
 */
int sts_header_encode(const sts_tensor_desc *tensors, size_t n, const sts_meta_entry *meta,
                      size_t nmeta, sts_layout layout, uint64_t align, void **buf, size_t *buf_len,
                      uint64_t *begin, uint64_t *end, sts_diag *diag);

/* Local.  Frees memory the library returned to the caller; NULL is a no-op. */
void sts_free(void *p);

/* ------------------------------------------------------------------------ */
/* Tensor -> output file mapping                                             */
/* ------------------------------------------------------------------------ */

typedef struct sts_mapping sts_mapping;

/* Local.  A new empty mapping.  Errors: STS_E_NOMEM. */
int sts_mapping_create(sts_mapping **out);
/* Local.  Frees m; NULL is a no-op. */
void sts_mapping_free(sts_mapping *m);
/* Local.  Sets name -> file index (>= 1); a later set replaces.  Errors: STS_E_ARG, STS_E_NOMEM. */
int sts_mapping_set(sts_mapping *m, const char *name, unsigned file_index);
/* Local.  File index of name, or 0 when unmapped. */
unsigned sts_mapping_get(const sts_mapping *m, const char *name);
/* Local.  Number of entries, and entry i in insertion order. */
size_t sts_mapping_count(const sts_mapping *m);
int sts_mapping_at(const sts_mapping *m, size_t i, const char **name, unsigned *file_index);
/* Local.  The highest file index (0 when empty). */
unsigned sts_mapping_file_count(const sts_mapping *m);
/*
 * Local.  Reads a JSON file {"<tensor>": index, ...}.  Errors: STS_E_NOENT,
 * STS_E_ACCESS, STS_E_IO, STS_E_MAPPING (not an object of positive integers).
 */
int sts_mapping_load_json(const char *path, sts_mapping **out, sts_diag *diag);
/*
 * Local.  The mapping of a reference model directory (docs/format.md §4): its
 * model.safetensors.index.json weight_map, or a single model.safetensors
 * (all in file 1).  File indices are parsed from "-KKKKK-of-NNNNN.safetensors";
 * when the parsed indices are not exactly 1..N, files are numbered 1..N by
 * sorted name.  Errors: STS_E_NOENT, STS_E_INDEX, STS_E_MAPPING, STS_E_IO.
 */
int sts_mapping_from_reference(const char *dir, sts_mapping **out, sts_diag *diag);
/* Local.  Writes m as pretty JSON to path ("-" = stdout).  Errors: STS_E_IO. */
int sts_mapping_write_json(const sts_mapping *m, const char *path, sts_diag *diag);

/* ------------------------------------------------------------------------ */
/* JSON strings                                                              */
/* ------------------------------------------------------------------------ */

/* sts_json_write_string flag: Python json.dumps style (ensure_ascii=True). */
#define STS_JSON_ASCII 1u

/*
 * Local.  Writes s (NUL-terminated; the caller keeps it) to f as a quoted
 * JSON string, the way the library writes names into its own files.  flags 0:
 * serde_json style - '"', '\\' and control characters escaped (\b \f \n \r
 * \t short, the rest \u00xx), all other bytes as they are.  STS_JSON_ASCII:
 * Python json.dumps style - also DEL and every non-ASCII character as \uXXXX
 * (surrogate pairs above U+FFFF), and each byte that is not valid UTF-8 as
 * \ufffd.  Nothing is buffered beyond f's own buffer.  Errors: STS_E_ARG (f or
 * s NULL, unknown flag), STS_E_IO (a write to f failed).
 */
int sts_json_write_string(FILE *f, const char *s, unsigned flags);

/* ------------------------------------------------------------------------ */
/* Verification (local, POSIX reads)                                         */
/* ------------------------------------------------------------------------ */

/* Called once per problem found; file is the path concerned. */
typedef void (*sts_problem_fn)(void *ud, const char *file, int code, const char *message);

/*
 * Local.  Strictly validates path: a safetensors file, or a checkpoint
 * directory (model.safetensors, index + model files, or rank files, with the
 * cross-file checks of docs/format.md).  Reports every problem through fn
 * (may be NULL) and returns STS_OK when none was found, else the code of the
 * first problem.  *nproblems (may be NULL) receives the count.
 */
int sts_verify_path(const char *path, sts_problem_fn fn, void *ud, size_t *nproblems);

/* ------------------------------------------------------------------------ */
/* Progress                                                                  */
/* ------------------------------------------------------------------------ */

/* Called on rank 0 only, from inside long collective calls; must not call MPI. */
typedef void (*sts_progress_fn)(void *ud, uint64_t bytes_done, uint64_t bytes_total);

/* ------------------------------------------------------------------------ */
/* MPI-IO hints                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Local.  The hints libstshard gives MPI_File_open for every file it opens
 * when the caller passes MPI_INFO_NULL: those of the environment variable
 * STSHARD_MPI_HINTS ("key=value,key=value", e.g. striping_factor=8,
 * cb_nodes=4).  *out receives a new MPI_Info the caller frees with
 * MPI_Info_free, or MPI_INFO_NULL when the variable is unset or empty.  Lets
 * a program open its own files (a benchmark baseline) exactly as the library
 * does.  Errors: STS_E_ARG (an entry is not key=value; diag names it),
 * STS_E_NOMEM, STS_E_MPI.
 */
int sts_mpiio_env_hints(MPI_Info *out, sts_diag *diag);

/* ------------------------------------------------------------------------ */
/* Reader: offset reads of any block of any checkpoint                       */
/* ------------------------------------------------------------------------ */

/*
 * A reader sees a checkpoint as a set of global tensors, each stored as one
 * or more blocks in one or more files.  It reads any box of a tensor by
 * intersecting it with the stored blocks and reading only the bytes of each
 * intersection with MPI-IO, so a rank reads exactly the bytes of the blocks
 * it asks for.  Only headers are read at open.
 */
typedef struct sts_reader sts_reader;

/* What sts_reader_open found. */
typedef enum sts_ckpt_kind {
    STS_CKPT_FILE = 0, /* one safetensors file (its path, or a directory with model.safetensors) */
    STS_CKPT_INDEXED =
        1,               /* model.safetensors.index.json and the model files its weight_map names */
    STS_CKPT_SHARDED = 2 /* rank files with DCP_SHARDING_INFO (stshard save or PyTorch DCP) */
} sts_ckpt_kind;

/*
 * Local.  What the checkpoint directory dir holds, by the rules of
 * docs/format.md ("What a checkpoint directory holds"), which every command
 * that takes a checkpoint directory applies: *kind receives its form and
 * *names (free with sts_ckpt_names_free) every visible *.safetensors file
 * name in it, sorted bytewise; *n their count.  Hidden entries are ignored.
 * Nothing is opened.  Errors: STS_E_ARG, STS_E_NOENT, STS_E_ACCESS, STS_E_IO
 * (cannot list, or a *.safetensors entry is not a regular file),
 * STS_E_AMBIGUOUS_INPUT (model.safetensors or its index beside rank files),
 * STS_E_EMPTY_INPUT (no index and no *.safetensors file), STS_E_NOMEM.
 */
int sts_ckpt_scan(const char *dir, sts_ckpt_kind *kind, char ***names, size_t *n, sts_diag *diag);
/* Local.  Frees what sts_ckpt_scan returned; NULL-safe. */
void sts_ckpt_names_free(char **names, size_t n);

/* A tensor of an open checkpoint.  Pointers are owned by the reader. */
typedef struct sts_global_tensor {
    const char *name; /* NUL-terminated UTF-8 */
    sts_dtype dtype;
    uint32_t ndim;         /* 0 for a scalar */
    const uint64_t *shape; /* ndim entries: the global shape */
    uint64_t nbytes;       /* byte size of the whole tensor */
    size_t nblocks;        /* stored blocks (1 in a consolidated checkpoint) */
} sts_global_tensor;

/*
 * Collective over comm.  Opens the checkpoint at path, which is one of:
 * a safetensors file; a directory with model.safetensors.index.json (only the
 * files its weight_map names are read, and the map must agree with their
 * headers); a directory with model.safetensors; a directory of rank files
 * (every *.safetensors file in it, each with DCP_SHARDING_INFO: its blocks
 * lie at their saved_offsets; a plain file, given alone, holds whole
 * tensors).  Each header is read
 * once, by one rank (files are spread over ranks).  Every rank holds the
 * same tensor table.  Where the block records live is the info key
 * "stshard_metadata": "replicated" (default: the parsed headers are
 * exchanged with MPI_Allgatherv, so every rank holds every block) or
 * "distributed" (each tensor's blocks go to one owner rank, which checks
 * them; every rank receives one summary per tensor, and sts_reader_read
 * fetches from the owners the blocks its requests meet, so no rank holds
 * every record; sts_reader_block and sts_reader_read_local then return
 * STS_E_UNSUPPORTED).  The ranks agree on the mode (distributed only if
 * every rank asks for it).
 * Blocks of a tensor must tile its global box (identical duplicates, e.g. a
 * replicated tensor saved by several ranks, count once) and agree on dtype.
 * comm is duplicated; info (may be MPI_INFO_NULL; the caller keeps it) may
 * hold MPI-IO hints, passed to MPI_File_open (with none, STSHARD_MPI_HINTS
 * applies), and the key "stshard_strided_reads": "runs" (default: strided
 * blocks are read one exact contiguous run per call) or "view" (one call
 * through a subarray file view; the reader then sets "romio_ds_read" to
 * "disable", which ROMIO honours, but Open MPI's OMPIO may still read the
 * gaps between runs); "stshard_exchange": "auto" (default) or "off" (see
 * sts_reader_read); "stshard_exchange_buffer": staging bytes per rank for
 * the exchange, decimal (default 2097152).  The ranks agree on the exchange
 * settings (off if any rank says off; the smallest buffer).  Errors:
 * STS_E_ARG (NULL path, or an stshard_* value not listed here), STS_E_NOENT,
 * STS_E_EMPTY_INPUT, STS_E_AMBIGUOUS_INPUT (docs/format.md §5),
 * STS_E_INDEX, every header error, STS_E_SHARDING_INFO, STS_E_DTYPE_MISMATCH,
 * STS_E_COVERAGE_GAP, STS_E_COVERAGE_OVERLAP, STS_E_NOMEM, STS_E_MPI,
 * STS_E_IO; the same on every rank, diag names the file or tensor.
 */
int sts_reader_open(MPI_Comm comm, const char *path, MPI_Info info, sts_reader **out,
                    sts_diag *diag);
/* Local.  The kind of checkpoint. */
sts_ckpt_kind sts_reader_kind(const sts_reader *r);
/* Local.  Number of stored files the checkpoint is made of. */
size_t sts_reader_file_count(const sts_reader *r);
/* Local.  Number of tensors. */
size_t sts_reader_count(const sts_reader *r);
/* Local.  Tensor i (0 <= i < count) in name order (bytewise); NULL if out of range. */
const sts_global_tensor *sts_reader_tensor(const sts_reader *r, size_t i);
/* Local.  Index of the tensor named name, or -1. */
long sts_reader_find(const sts_reader *r, const char *name);

/* Local.  Path of stored file i (0 <= i < file count); NULL if out of range. */
const char *sts_reader_file_path(const sts_reader *r, size_t i);

/* Where one stored block of a tensor lives.  Pointers are owned by the reader. */
typedef struct sts_stored_block {
    size_t file;             /* index for sts_reader_file_path */
    uint64_t data_offset;    /* absolute byte offset of the block's first byte in the file */
    const uint64_t *offsets; /* ndim entries: block start in the global tensor */
    const uint64_t *shape;   /* ndim entries */
} sts_stored_block;

/*
 * Local.  Stored block k (0 <= k < nblocks) of tensor i, in offset order.
 * Errors: STS_E_ARG when i or k is out of range; STS_E_UNSUPPORTED with
 * distributed metadata (the blocks are on their owner ranks).
 */
int sts_reader_block(const sts_reader *r, size_t i, size_t k, sts_stored_block *out);

/* One block to read.  Pointers are borrowed for the duration of the call. */
typedef struct sts_read_req {
    const char *name;        /* tensor name */
    sts_dtype dtype;         /* must equal the stored dtype (no conversion is done) */
    uint32_t ndim;           /* must equal the tensor's */
    const uint64_t *offsets; /* ndim entries: block start in the global tensor */
    const uint64_t *shape;   /* ndim entries: block shape (zero extents are allowed) */
    void *buf;               /* receives the block, dense row-major: numel * bits / 8 bytes */
} sts_read_req;

/*
 * Collective over the reader's communicator.  Every rank passes its own list
 * of n requests (n may differ between ranks, and may be 0).  All requests of
 * all ranks are validated before any byte is read; then each rank reads its
 * blocks with independent MPI-IO reads of exactly the bytes needed.
 * Two-phase reads ("stshard_exchange" "auto"): where the ranks' requests
 * together tile whole rows of a stored block and some of them are strided
 * in the file (short runs), the rows are split among all ranks, each reads
 * its part with large contiguous reads, and MPI_Alltoallw delivers the
 * pieces; every byte is still read once and only if requested, and a rank
 * reads about its own share, though not always its own bytes
 * (sts_read_stats.bytes_received counts what others read for it).  The
 * requests are gathered on every rank (MPI_Allgatherv) to plan this (with
 * distributed metadata every rank then fetches the blocks of all of them,
 * so a call's memory grows with every rank's requests, not only its own).  For
 * sub-byte dtypes (F4, F6_*) the offsets and extents of the last dimension
 * must cover whole bytes.  Errors: STS_E_ARG (NULL buffer, bad request),
 * STS_E_NO_TENSOR, STS_E_DTYPE_MISMATCH, STS_E_BLOCK_RANGE (the message names
 * the tensor, the dimension and the bounds), STS_E_UNSUPPORTED (sub-byte
 * block not on byte boundaries), STS_E_IO, STS_E_MPI, STS_E_NOMEM; the same on
 * every rank, detail in sts_reader_errmsg.  On error buffer contents are
 * unspecified.  Buffers must not overlap each other.
 */
int sts_reader_read(sts_reader *r, const sts_read_req *reqs, size_t n);
/*
 * Local.  The same reads without the agreement and without two-phase reads
 * (each rank reads its own bytes): for callers that read from
 * inside another collective (e.g. a streaming writer) and agree on errors
 * themselves.  Returns this rank's code only.  With distributed metadata it
 * cannot fetch block records and returns STS_E_UNSUPPORTED.
 */
int sts_reader_read_local(sts_reader *r, const sts_read_req *reqs, size_t n);

/* This rank's counters since open. */
typedef struct sts_read_stats {
    uint64_t requests;       /* blocks requested */
    uint64_t bytes_needed;   /* sum of requested block sizes */
    uint64_t bytes_read;     /* tensor data bytes requested from MPI-IO */
    uint64_t transfers;      /* MPI-IO read calls issued for tensor data */
    uint64_t header_bytes;   /* header bytes this rank read at open */
    uint64_t bytes_received; /* bytes of its blocks other ranks read and sent (two-phase reads) */
    double seconds;          /* wall time spent in reads */
} sts_read_stats;

/* Local.  Fills *out with this rank's counters. */
void sts_reader_stats(const sts_reader *r, sts_read_stats *out);
/* Local.  The last error's detail (never NULL; "" when none). */
const char *sts_reader_errmsg(const sts_reader *r);
/* Collective (closes files, frees the duplicated communicator).  NULL is a no-op. */
void sts_reader_free(sts_reader *r);

/* ------------------------------------------------------------------------ */
/* Sharded save                                                              */
/* ------------------------------------------------------------------------ */

typedef struct sts_writer sts_writer;

/* One rank's local block of a tensor.  Pointers are borrowed until commit. */
typedef struct sts_block {
    const char *name; /* fully qualified tensor name */
    sts_dtype dtype;
    uint32_t ndim;
    const uint64_t *global_shape; /* ndim entries */
    const uint64_t *offsets;      /* ndim entries: block start in the global tensor */
    const uint64_t *shape;        /* ndim entries: block shape */
    const void *data;             /* contiguous row-major block bytes; NULL: sts_writer_put */
} sts_block;

typedef struct sts_save_opts {
    const sts_mapping *mapping; /* tensor -> file index, or NULL for one file per rank */
    int fsync;                  /* sync files before rename */
    int force;                  /* replace existing final-named files */
    sts_progress_fn progress;
    void *progress_ud;
    /*
     * Saving straight into a Hugging Face checkpoint (docs/save.md, "Save
     * modes").  With both fields below unset, the commit writes rank files.
     *  - consolidate_dir: the commit writes the rank files into dir, then
     *    consolidates them into consolidate_dir on the same communicator
     *    (as sts_consolidate), then removes them unless keep_shards.
     *  - direct: dir receives the consolidated checkpoint itself; every rank
     *    writes its blocks straight into the model files, no rank file is
     *    written.  Whole-tensor blocks on any rank ("full-tensor save") are
     *    the special case where every block is a tensor.
     * The output files follow `consolidate` (NULL: the defaults of
     * sts_consolidate_opts_init); its mapping defaults to `mapping` above
     * when it has neither a mapping nor a max_file_size (the reference
     * design's fqn_to_index_mapping serves both steps); its fsync and force
     * are or-ed with the fields above; its progress defaults to the one
     * above.  Unlike sts_consolidate, every rank must pass the same output
     * options (as for the mapping above).  The output is byte for byte what
     * sts_consolidate of the rank files gives.
     */
    const char *consolidate_dir;
    const struct sts_consolidate_opts *consolidate; /* borrowed until free */
    int keep_shards;                                /* keep the rank files after consolidating */
    int direct;
} sts_save_opts;

/* Local.  Fills o with the defaults (no mapping, no fsync, no force, rank files only). */
void sts_save_opts_init(sts_save_opts *o);

typedef struct sts_save_stats {
    uint64_t bytes_local; /* data bytes this rank wrote */
    uint64_t bytes_total; /* data bytes all ranks wrote */
    uint64_t files_total; /* rank files written (0 in direct mode) */
    double seconds;       /* wall time of the commit, agreed (max over ranks) */
    /* With consolidate_dir or direct (else 0): */
    uint64_t output_files;      /* model-*.safetensors files published */
    uint64_t output_tensors;    /* tensors in them */
    uint64_t output_bytes;      /* tensor data bytes in them */
    double consolidate_seconds; /* part of seconds spent consolidating (consolidate_dir) */
} sts_save_stats;

/*
 * Collective over comm.  Starts a sharded save into directory dir (created if
 * missing).  comm is duplicated; opts is copied (the mapping is borrowed
 * until free).  Errors: STS_E_ARG, STS_E_NOMEM, STS_E_MPI, STS_E_IO,
 * STS_E_ACCESS.
 * The directory is created (rank 0, mkdir -p) and checked at commit, so that
 * its errors come with a message (sts_writer_errmsg); opts (force, fsync,
 * the mapping's contents) must be the same on every rank.
 */
int sts_writer_create(MPI_Comm comm, const char *dir, const sts_save_opts *opts, sts_writer **out);
/*
 * Local.  Adds a block of this rank.  A replicated tensor is added by several
 * ranks with zero offsets and its full shape; exactly one rank stores it.
 * Errors: STS_E_ARG (shape/offset outside global shape, bad dtype),
 * STS_E_DUPLICATE_NAME, STS_E_RESERVED_NAME, STS_E_NOMEM.
 * A failed add is remembered: the commit then fails on every rank with its
 * code and message and writes nothing, so one rank's bad block cannot hang
 * or half-write a save.
 */
int sts_writer_add(sts_writer *w, const sts_block *b);
/*
 * Streaming save (docs/save.md, "Streaming save"): the blocks are declared
 * first and their bytes written in pieces, so a caller never holds more than
 * one piece.  sts_writer_add with data NULL declares a block; a plain commit
 * of a declared block with bytes fails with STS_E_ARG on every rank.
 *
 * Collective over the writer's communicator.  Plans the save as the commit
 * would (agreement on add failures, the directory, who stores each
 * replicated tensor, the output files, existing rank files, free space) and
 * creates this rank's files under their temporary names with their headers
 * written, kept open.  After it, sts_writer_add fails (STS_E_ARG) and the
 * commit finishes the save.  Errors: those of the commit's planning,
 * STS_E_UNSUPPORTED with opts.direct, STS_E_ARG when called twice or after
 * commit; the same on every rank.  A failed begin removes what it created
 * and is remembered: the commit fails with its code.
 */
int sts_writer_begin(sts_writer *w);
/*
 * Local, after sts_writer_begin.  Sets *stores to 1 if this rank writes the
 * block name (a replicated tensor added by several ranks is stored by
 * exactly one of them; the others need not produce its bytes), else 0.
 * Returns STS_OK, or STS_E_ARG (NULL argument, an unknown name, before
 * begin) with *stores set to 0 when stores is not NULL.  The answer and the
 * status are kept apart so that `if (rc != STS_OK)` and `if (stores)` never
 * mix an error with "stored".
 */
int sts_writer_stores(const sts_writer *w, const char *name, int *stores);
/*
 * Local, after sts_writer_begin, before commit.  Writes bytes
 * [off, off + len) of this rank's block name (its dense row-major bytes)
 * into its file with independent MPI-IO.  data is read before the call
 * returns (copied or written; not borrowed).  For a block this rank does not
 * store (sts_writer_stores gives 0) nothing is written and STS_OK returned.
 * Every byte of a stored block must be put exactly once, in any order and
 * pieces; the commit checks the byte count per block.  Errors: STS_E_ARG
 * (NULL arguments, an unknown name, a range outside the block, a block added
 * with data, before begin or after commit), STS_E_IO, STS_E_NOSPACE,
 * STS_E_MPI (the message names the file, the tensor and the offset).  A
 * failed put is remembered like a failed add: the commit then fails on every
 * rank with its code and message, and nothing is published.
 */
int sts_writer_put(sts_writer *w, const char *name, uint64_t off, const void *data, uint64_t len);
/*
 * Collective over the writer's communicator.  Writes every rank's file under
 * a temporary name, then renames all of them once every rank succeeded.
 * After sts_writer_begin: checks that every stored declared block received
 * exactly its byte count (STS_E_ARG naming the tensor and both counts),
 * writes the blocks added with data, flushes, syncs (opts.fsync) and closes
 * the files, then publishes the same way; stats->seconds then counts from
 * begin.
 * stats may be NULL.  Errors: any STS_E_* code, the same on every rank.
 * With opts.consolidate_dir the rank files are then consolidated (errors of
 * sts_consolidate; the rank files stay when it fails).  With opts.direct the
 * plan is built from every rank's blocks by the distributed metadata plane
 * of sts_consolidate (each block record checked on its tensor's owner rank,
 * docs/design.md) with the checks of sts_consolidate, plus: the blocks of a
 * tensor must give the same global shape (STS_E_ARG) and cover it
 * (STS_E_COVERAGE_GAP); then the files are written under temporary names
 * and published (index last) only when every rank succeeded.
 */
int sts_writer_commit(sts_writer *w, sts_save_stats *stats);
/* Local.  The last error's detail (never NULL; "" when none). */
const char *sts_writer_errmsg(const sts_writer *w);
/* Collective (frees the duplicated communicator).  NULL is a no-op. */
void sts_writer_free(sts_writer *w);

/* ------------------------------------------------------------------------ */
/* Consolidation                                                             */
/* ------------------------------------------------------------------------ */

typedef struct sts_consolidate_opts {
    const sts_mapping *mapping; /* tensor -> output file; NULL: one file or max_file_size */
    uint64_t max_file_size;     /* split in canonical order when > 0 and no mapping */
    sts_layout layout;
    uint64_t align;     /* 0 or a multiple of 8 */
    int drop_unmapped;  /* drop tensors the mapping lacks instead of failing */
    size_t buffer_size; /* per-rank data buffer bound, bytes (0 = default) */
    int fsync;
    int force; /* replace existing final-named output */
    sts_progress_fn progress;
    void *progress_ud;
} sts_consolidate_opts;

/* Local.  Fills o with the defaults (canonical, no align, 4 MiB buffer). */
void sts_consolidate_opts_init(sts_consolidate_opts *o);

typedef struct sts_consolidate_stats {
    uint64_t input_files;
    uint64_t output_files;
    uint64_t tensors;
    uint64_t bytes_total; /* tensor data bytes written by all ranks */
    uint64_t bytes_local; /* tensor data bytes written by this rank */
    double seconds;
} sts_consolidate_stats;

/*
 * Collective over comm.  Consolidates the rank files in indir into
 * model-KKKKK-of-NNNNN.safetensors files and model.safetensors.index.json in
 * outdir.  Validates coverage before writing; output appears atomically.
 * The plan follows rank 0's opts (mapping, max_file_size, layout, align,
 * drop_unmapped, fsync, force are broadcast from it; other ranks may pass a
 * NULL mapping); buffer_size and progress are each rank's own.  opts NULL
 * means the defaults.  stats and diag may be NULL.  Errors: any STS_E_*
 * code, the same on every rank; diag names the file, tensor or offset.
 */
int sts_consolidate(MPI_Comm comm, const char *indir, const char *outdir,
                    const sts_consolidate_opts *opts, sts_consolidate_stats *stats, sts_diag *diag);

#ifdef __cplusplus
}
#endif

#endif /* STSHARD_H */
