/*
 * cmd_verify.c - `stshard verify PATH`: every problem of a file or checkpoint
 * directory, found by the library's verifier (sts_verify_path).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char verify_usage[] =
    "Usage: stshard verify PATH [--json | --quiet]\n"
    "\n"
    "Strictly validates a safetensors file or a checkpoint directory (a single\n"
    "model.safetensors, model.safetensors.index.json with its model files, or\n"
    "rank files shard-RRRRR-model-KKKKK-of-NNNNN.safetensors).  Reads headers only.\n"
    "Every problem is listed as 'FILE: ErrorName: message'.\n"
    "\n"
    "Options:\n"
    "  --json     print {\"path\", \"valid\", \"problems\": [{\"file\", \"error\", \"message\"}]}\n"
    "  --quiet    print nothing; only the exit status tells\n"
    "  -h, --help show this help\n"
    "\n"
    "Exit status: 0 valid, 1 invalid, 2 usage error, 3 I/O error (e.g. missing PATH),\n"
    "4 internal error.\n";

typedef struct vproblem {
    char *file;
    int code;
    char *message;
} vproblem;

typedef struct vstate {
    int json;
    int quiet;
    int status;
    vproblem *list; /* kept for --json, which prints "valid" before the problems */
    size_t n, cap;
    int nomem;
} vstate;

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void on_problem(void *ud, const char *file, int code, const char *message)
{
    vstate *s = ud;
    int st = sts_exit_status(code);
    /* The most serious class wins: an I/O failure means the verdict is incomplete. */
    s->status = st > s->status ? st : s->status;
    if (!s->json) {
        if (!s->quiet)
            printf("%s: %s: %s\n", file, sts_errname(code), message);
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        vproblem *p = realloc(s->list, cap * sizeof *p);
        if (!p) {
            s->nomem = 1;
            return;
        }
        s->list = p;
        s->cap = cap;
    }
    s->list[s->n].file = dup_str(file);
    s->list[s->n].code = code;
    s->list[s->n].message = dup_str(message);
    if (!s->list[s->n].file || !s->list[s->n].message)
        s->nomem = 1;
    s->n++;
}

static void print_json(const char *path, const vstate *s)
{
    printf("{\n  \"path\": ");
    cli_json_string(stdout, path);
    printf(",\n  \"valid\": %s,\n  \"problems\": [", s->status == 0 ? "true" : "false");
    for (size_t i = 0; i < s->n; i++) {
        printf("%s\n    {\"file\": ", i ? "," : "");
        cli_json_string(stdout, s->list[i].file ? s->list[i].file : "");
        printf(", \"error\": ");
        cli_json_string(stdout, sts_errname(s->list[i].code));
        printf(", \"message\": ");
        cli_json_string(stdout, s->list[i].message ? s->list[i].message : "");
        printf("}");
    }
    printf("%s]\n}\n", s->n ? "\n  " : "");
}

int cmd_verify(int argc, char **argv)
{
    vstate s = {0};
    const char *path = NULL;
    size_t n = 0;
    int opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(verify_usage, stdout);
            return CLI_OK;
        } else if (!opts_done && strcmp(a, "--json") == 0) {
            s.json = 1;
        } else if (!opts_done && (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)) {
            s.quiet = 1;
        } else if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("verify", "unknown option '%s'", a);
        } else if (path) {
            return cli_usage_error("verify", "only one PATH may be given");
        } else {
            path = a;
        }
    }
    if (!path)
        return cli_usage_error("verify", "missing PATH");
    if (s.json && s.quiet)
        return cli_usage_error("verify", "--json and --quiet exclude each other");
    sts_verify_path(path, on_problem, &s, &n);
    if (s.nomem)
        s.status = CLI_INTERNAL;
    if (s.json)
        print_json(path, &s);
    else if (!s.quiet && n == 0)
        printf("%s: valid\n", path);
    else if (!s.quiet && s.status == CLI_INVALID)
        printf("%s: INVALID: %zu problem%s\n", path, n, n == 1 ? "" : "s");
    else if (!s.quiet)
        printf("%s: could not be verified: %zu problem%s\n", path, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < s.n; i++) {
        free(s.list[i].file);
        free(s.list[i].message);
    }
    free(s.list);
    if (fflush(stdout) != 0)
        return CLI_IO;
    return s.status;
}
