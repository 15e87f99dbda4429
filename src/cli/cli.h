/*
 * cli.h - shared pieces of the stshard tool.  The tool sees the library only
 * through include/stshard.h.
 */
#ifndef STS_CLI_H
#define STS_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "stshard.h"

/* A subcommand: returns the process exit status (0..4, see sts_exit_status). */
typedef int (*cli_cmd_fn)(int argc, char **argv);

int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_save(int argc, char **argv);
int cmd_mapping(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_reshard(int argc, char **argv);
int cmd_consolidate(int argc, char **argv);

/* Exit statuses of the tool (docs/cli.md). */
enum { CLI_OK = 0, CLI_INVALID = 1, CLI_USAGE = 2, CLI_IO = 3, CLI_INTERNAL = 4 };

/*
 * Parses a byte size: a number with an optional suffix.  K/M/G/T and
 * KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000 (as the
 * Hugging Face tools read "5GB").  Returns 0, or -1 when malformed.
 */
int cli_parse_size(const char *s, uint64_t *out);
/* Parses a non-negative decimal integer that fits in uint64_t; 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);
/* Formats bytes as "1.50 GiB" into buf. */
const char *cli_format_bytes(uint64_t bytes, char *buf, size_t len);

/* Prints "stshard CMD: ErrorName: message" to stderr. */
void cli_error(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* d's message without a leading or "path: "-prefixed "ErrorName: " (cli_error prints the name). */
const char *cli_diag_text(sts_diag *d);
/*
 * Local.  Asks the kernel to drop clean page-cache pages, dentries and
 * inodes (the caller syncs first).  1 when done; 0 with the reason in note
 * (it needs root).
 */
int cli_drop_page_cache(char *note, size_t len);
/* Prints a usage error with a hint to run --help, and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when rank 0's stderr reaches a terminal, directly or through mpirun (progress is shown only
 * then). */
int cli_stderr_is_tty(void);

/*
 * A progress line on stderr for long collective calls (rank 0, terminal
 * only): bytes done and total, GiB/s and ETA, redrawn at most 4 times a second.
 * Use cli_progress_fn as the library callback with a cli_progress as ud.
 */
typedef struct cli_progress {
    const char *label;
    double t0;
    double last;
    int shown;
    int on; /* cli_stderr_is_tty() at start */
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_fn(void *ud, uint64_t done, uint64_t total);
void cli_progress_end(cli_progress *p);

/* Monotonic wall clock in seconds. */
double cli_now(void);

/* Peak resident set of this process in KiB (VmHWM of /proc/self/status), or 0 when unknown. */
uint64_t cli_peak_rss_kib(void);

/* JSON string writer for --json output: writes s quoted and escaped. */
void cli_json_string(FILE *f, const char *s);

#endif /* STS_CLI_H */
