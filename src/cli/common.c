/*
 * common.c - argument parsing, messages, progress and JSON helpers of the tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1ULL},
        {"B", 1ULL},
        {"K", 1ULL << 10},
        {"KiB", 1ULL << 10},
        {"KB", 1000ULL},
        {"M", 1ULL << 20},
        {"MiB", 1ULL << 20},
        {"MB", 1000000ULL},
        {"G", 1ULL << 30},
        {"GiB", 1ULL << 30},
        {"GB", 1000000000ULL},
        {"T", 1ULL << 40},
        {"TiB", 1ULL << 40},
        {"TB", 1000000000000ULL},
    };
    char *end = NULL;
    double v;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0 && strcmp(end, units[i].suffix) == 0) {
            double bytes = v * (double)units[i].mult;
            if (bytes >= 18446744073709551615.0)
                return -1;
            *out = (uint64_t)(bytes + 0.5);
            return 0;
        }
    }
    return -1;
}

const char *cli_format_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < sizeof names / sizeof names[0]) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.2f %s", v, names[u]);
    return buf;
}

void cli_error(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "stshard %s: %s: ", cmd, sts_errname(code));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "stshard %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'stshard %s --help'.\n", cmd);
    return CLI_USAGE;
}

/*
 * Whether a person watches rank 0's stderr.  Under mpirun a rank's stderr is
 * a pipe that mpirun forwards to its own stderr, so when ours is not a
 * terminal, ask where the parent's stderr goes (mpirun launches the local
 * ranks itself).  A terminal there means progress lines reach a person; a
 * file, a pipe (CTest) or no terminal (batch jobs, nohup) means silence.
 */
int cli_stderr_is_tty(void)
{
    char path[64], dest[256];
    ssize_t n;
    if (isatty(STDERR_FILENO))
        return 1;
    snprintf(path, sizeof path, "/proc/%ld/fd/2", (long)getppid());
    n = readlink(path, dest, sizeof dest - 1);
    if (n <= 0)
        return 0;
    dest[n] = '\0';
    return strncmp(dest, "/dev/pts/", 9) == 0 || strncmp(dest, "/dev/tty", 8) == 0;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t cli_peak_rss_kib(void)
{
    char line[256];
    uint64_t kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtoull(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

void cli_progress_start(cli_progress *p, const char *label)
{
    p->label = label;
    p->t0 = cli_now();
    p->last = 0;
    p->shown = 0;
    p->on = cli_stderr_is_tty();
}

void cli_progress_fn(void *ud, uint64_t done, uint64_t total)
{
    cli_progress *p = ud;
    double now = cli_now();
    double el = now - p->t0;
    double rate, eta;
    char a[32], b[32];
    if (!p->on || (now - p->last < 0.25 && done < total))
        return;
    p->last = now;
    p->shown = 1;
    rate = el > 0 ? (double)done / el : 0.0;
    eta = rate > 0 && total > done ? (double)(total - done) / rate : 0.0;
    fprintf(stderr, "\r%s: %s / %s  %.2f GiB/s  ETA %.0fs   ", p->label,
            cli_format_bytes(done, a, sizeof a), cli_format_bytes(total, b, sizeof b),
            rate / (1024.0 * 1024.0 * 1024.0), eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown) {
        fputc('\n', stderr);
        p->shown = 0;
    }
}

void cli_json_string(FILE *f, const char *s)
{
    /* Write errors are not reported here (nor were they before): inspect and verify check
     * fflush(stdout) at the end. */
    (void)sts_json_write_string(f, s, 0);
}

/* The diag text without a repeated "ErrorName: " (cli_error prints the name already). */
const char *cli_diag_text(sts_diag *d)
{
    const char *name = sts_errname(d->code);
    size_t n = strlen(name);
    char *at = d->message;
    /* The name may follow a "path: " prefix; drop its first occurrence at a field start. */
    for (char *p = at; (p = strstr(p, name)) != NULL; p++) {
        if ((p == at || (p >= at + 2 && p[-2] == ':' && p[-1] == ' ')) && p[n] == ':' &&
            p[n + 1] == ' ') {
            memmove(p, p + n + 2, strlen(p + n + 2) + 1);
            break;
        }
    }
    return d->message;
}

int cli_drop_page_cache(char *note, size_t len)
{
    int fd, e;
    fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd >= 0 && write(fd, "3\n", 2) == 2) {
        close(fd);
        return 1;
    }
    e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(note, len, "cannot write /proc/sys/vm/drop_caches: %s%s", strerror(e),
             geteuid() != 0 ? " (needs root)" : "");
    return 0;
}
