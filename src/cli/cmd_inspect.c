/*
 * cmd_inspect.c - `stshard inspect PATH`: the tensors, offsets and metadata of
 * a safetensors file or of every safetensors file of a checkpoint directory.
 * Reads headers only.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define SHARDING   "DCP_SHARDING_INFO"
#define INDEX_NAME "model.safetensors.index.json"

static const char inspect_usage[] =
    "Usage: stshard inspect PATH [--json]\n"
    "\n"
    "Shows a safetensors file, or every *.safetensors file of a checkpoint\n"
    "directory (model.safetensors, index + model files, or rank files): per\n"
    "tensor its name, dtype, shape, data offsets (relative to the data section),\n"
    "absolute file offsets and size, plus the __metadata__ with\n"
    "DCP_SHARDING_INFO decoded into each tensor's saved offsets, and totals.\n"
    "Use 'stshard verify' for the cross-file checks.\n"
    "\n"
    "Options:\n"
    "  --json     machine-readable output (exact integers)\n"
    "  -h, --help show this help\n"
    "\n"
    "Exit status: 0 ok, 1 a file is invalid, 2 usage, 3 I/O error.\n";

typedef struct totals {
    uint64_t files, tensors, bytes;
    int status;
} totals;

static void fail(totals *t, int code)
{
    int st = sts_exit_status(code);
    t->status = st > t->status ? st : t->status;
}

static void fmt_dims(char *buf, size_t len, uint32_t ndim, const uint64_t *v)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (uint32_t d = 0; d < ndim && at < len; d++)
        at +=
            (size_t)snprintf(buf + at, len - at, "%s%llu", d ? ", " : "", (unsigned long long)v[d]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

static void print_u64_array(uint32_t n, const uint64_t *v)
{
    putchar('[');
    for (uint32_t d = 0; d < n; d++)
        printf("%s%llu", d ? ", " : "", (unsigned long long)v[d]);
    putchar(']');
}

/* ------------------------------------------------------------------------ */
/* Text output                                                               */
/* ------------------------------------------------------------------------ */

enum { COL_NAME, COL_DTYPE, COL_SHAPE, COL_SAVED, COL_DATA, COL_FILE, COL_BYTES, NCOL };

static void tensor_cells(const sts_tensor_info *t, uint64_t start, char cell[NCOL][512])
{
    snprintf(cell[COL_NAME], sizeof cell[COL_NAME], "%s", t->name);
    snprintf(cell[COL_DTYPE], sizeof cell[COL_DTYPE], "%s", sts_dtype_name(t->dtype));
    fmt_dims(cell[COL_SHAPE], sizeof cell[COL_SHAPE], t->ndim, t->shape);
    if (t->saved_offsets)
        fmt_dims(cell[COL_SAVED], sizeof cell[COL_SAVED], t->ndim, t->saved_offsets);
    else
        snprintf(cell[COL_SAVED], sizeof cell[COL_SAVED], "-");
    snprintf(cell[COL_DATA], sizeof cell[COL_DATA], "%llu..%llu", (unsigned long long)t->begin,
             (unsigned long long)t->end);
    snprintf(cell[COL_FILE], sizeof cell[COL_FILE], "%llu..%llu",
             (unsigned long long)(start + t->begin), (unsigned long long)(start + t->end));
    cli_format_bytes(t->end - t->begin, cell[COL_BYTES], sizeof cell[COL_BYTES]);
}

static void print_metadata_text(const sts_header *h, int decoded)
{
    size_t n = sts_header_meta_count(h), w = 0;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        sts_header_meta_at(h, i, &k, &v);
        w = strlen(k) > w ? strlen(k) : w;
    }
    printf("  metadata:\n");
    for (size_t i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        sts_header_meta_at(h, i, &k, &v);
        if (strcmp(k, SHARDING) == 0 && decoded)
            printf("    %-*s  (decoded: column SAVED_OFFSETS)\n", (int)w, k);
        else if (strlen(v) > 100)
            printf("    %-*s  %.97s...\n", (int)w, k, v);
        else
            printf("    %-*s  %s\n", (int)w, k, v);
    }
}

static void print_file_text(const char *path, const sts_header *h, uint64_t start, int decoded)
{
    static const char *const head[NCOL] = {"NAME",         "DTYPE",        "SHAPE", "SAVED_OFFSETS",
                                           "DATA_OFFSETS", "FILE_OFFSETS", "BYTES"};
    size_t n = sts_header_count(h), w[NCOL];
    char cell[NCOL][512], size[32];
    uint64_t data = sts_header_data_size(h);
    printf("%s\n  header %llu bytes, data section at byte %llu, %s of data, %zu tensor%s\n", path,
           (unsigned long long)(start - 8), (unsigned long long)start,
           cli_format_bytes(data, size, sizeof size), n, n == 1 ? "" : "s");
    print_metadata_text(h, decoded);
    if (n == 0)
        return;
    /* Two passes: column widths first, then the rows. */
    for (int c = 0; c < NCOL; c++)
        w[c] = strlen(head[c]);
    for (size_t i = 0; i < n; i++) {
        tensor_cells(sts_header_tensor(h, i), start, cell);
        for (int c = 0; c < NCOL; c++)
            w[c] = strlen(cell[c]) > w[c] ? strlen(cell[c]) : w[c];
    }
    printf(" ");
    for (int c = 0; c < NCOL; c++) {
        if (c == COL_SAVED && !decoded)
            continue;
        printf(c == COL_BYTES ? " %*s" : " %-*s", (int)w[c], head[c]);
    }
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        tensor_cells(sts_header_tensor(h, i), start, cell);
        printf(" ");
        for (int c = 0; c < NCOL; c++) {
            if (c == COL_SAVED && !decoded)
                continue;
            printf(c == COL_BYTES ? " %*s" : " %-*s", (int)w[c], cell[c]);
        }
        putchar('\n');
    }
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                               */
/* ------------------------------------------------------------------------ */

static void print_file_json(const char *path, const sts_header *h, uint64_t start)
{
    size_t nmeta = sts_header_meta_count(h);
    uint64_t data = sts_header_data_size(h);
    printf("    {\n      \"file\": ");
    cli_json_string(stdout, path);
    printf(",\n      \"header_size\": %llu,\n      \"data_start\": %llu,\n"
           "      \"data_size\": %llu,\n      \"file_size\": %llu,\n      \"metadata\": {",
           (unsigned long long)(start - 8), (unsigned long long)start, (unsigned long long)data,
           (unsigned long long)(start + data));
    for (size_t i = 0; i < nmeta; i++) {
        const char *k = NULL, *v = NULL;
        sts_header_meta_at(h, i, &k, &v);
        printf("%s", i ? ", " : "");
        cli_json_string(stdout, k);
        printf(": ");
        cli_json_string(stdout, v);
    }
    printf("},\n      \"tensors\": [");
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *t = sts_header_tensor(h, i);
        printf("%s\n        {\"name\": ", i ? "," : "");
        cli_json_string(stdout, t->name);
        printf(", \"dtype\": \"%s\", \"shape\": ", sts_dtype_name(t->dtype));
        print_u64_array(t->ndim, t->shape);
        printf(", \"data_offsets\": [%llu, %llu], \"file_offsets\": [%llu, %llu], "
               "\"bytes\": %llu",
               (unsigned long long)t->begin, (unsigned long long)t->end,
               (unsigned long long)(start + t->begin), (unsigned long long)(start + t->end),
               (unsigned long long)(t->end - t->begin));
        if (t->saved_offsets) {
            printf(", \"saved_offsets\": ");
            print_u64_array(t->ndim, t->saved_offsets);
        }
        putchar('}');
    }
    printf("%s]\n    }", sts_header_count(h) ? "\n      " : "");
}

static void print_error_json(const char *path, int code, const char *message)
{
    printf("    {\"file\": ");
    cli_json_string(stdout, path);
    printf(", \"error\": \"%s\", \"message\": ", sts_errname(code));
    cli_json_string(stdout, message);
    putchar('}');
}

/* ------------------------------------------------------------------------ */
/* Files and directories                                                     */
/* ------------------------------------------------------------------------ */

static void inspect_file(const char *path, int json, totals *t)
{
    sts_header *h = NULL;
    uint64_t start = 0;
    sts_diag diag;
    int decoded = 0;
    int rc = sts_header_read_file(path, &h, &start, &diag);
    if (json && t->files > 0)
        printf(",\n");
    t->files++;
    if (rc != STS_OK) {
        fail(t, rc);
        cli_error("inspect", rc, "%s", cli_diag_text(&diag));
        if (json)
            print_error_json(path, rc, diag.message);
        return;
    }
    if (sts_header_meta_get(h, SHARDING)) {
        rc = sts_header_decode_sharding(h, &diag);
        decoded = rc == STS_OK;
        if (rc != STS_OK) {
            fail(t, rc);
            cli_error("inspect", rc, "%s: %s", path, cli_diag_text(&diag));
        }
    }
    for (size_t i = 0; i < sts_header_count(h); i++) {
        const sts_tensor_info *ti = sts_header_tensor(h, i);
        t->bytes += ti->end - ti->begin;
    }
    t->tensors += sts_header_count(h);
    if (json)
        print_file_json(path, h, start);
    else
        print_file_text(path, h, start, decoded);
    sts_header_free(h);
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p)
        snprintf(p, a + b + 2, "%s/%s", dir, name);
    return p;
}

/*
 * The directory's *.safetensors files as paths, sorted, when the library's
 * scan (the rule every command applies) accepts it; else reports and returns
 * the exit status.
 */
static int list_safetensors(const char *dir, char ***out, size_t *n)
{
    sts_diag d;
    sts_ckpt_kind kind;
    char **names = NULL;
    int rc = sts_ckpt_scan(dir, &kind, &names, n, &d);
    if (rc == STS_E_EMPTY_INPUT || (rc == STS_OK && *n == 0)) {
        cli_error("inspect", STS_E_EMPTY_INPUT, "%s: no *.safetensors files", dir);
        rc = STS_E_EMPTY_INPUT;
    } else if (rc != STS_OK) {
        cli_error("inspect", rc, "%s", cli_diag_text(&d));
    }
    for (size_t i = 0; rc == STS_OK && i < *n; i++) {
        char *p = join(dir, names[i]);
        if (!p) {
            cli_error("inspect", STS_E_NOMEM, "out of memory");
            rc = STS_E_NOMEM;
            break;
        }
        free(names[i]);
        names[i] = p;
    }
    if (rc != STS_OK) {
        sts_ckpt_names_free(names, *n);
        names = NULL;
        *n = 0;
    }
    *out = names;
    return sts_exit_status(rc);
}

/* One line about the index, if the directory has one; detail is verify's job. */
static void inspect_index(const char *dir, int json)
{
    char *path = join(dir, INDEX_NAME);
    FILE *f = path ? fopen(path, "rb") : NULL;
    char *text = NULL;
    long len;
    cJSON *root = NULL;
    const cJSON *ts, *wm;
    if (!f)
        goto done;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(text = malloc((size_t)len + 1)) || fread(text, 1, (size_t)len, f) != (size_t)len)
        goto done;
    root = cJSON_ParseWithLength(text, (size_t)len);
    ts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"),
                                          "total_size");
    wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (json) {
        printf(",\n  \"index\": {\"file\": ");
        cli_json_string(stdout, path);
        if (cJSON_IsNumber(ts))
            printf(", \"total_size\": %.0f", ts->valuedouble);
        if (cJSON_IsObject(wm))
            printf(", \"tensors\": %d", cJSON_GetArraySize(wm));
        printf("}");
    } else if (cJSON_IsNumber(ts) && cJSON_IsObject(wm)) {
        printf("\n%s: total_size %.0f bytes, %d tensors in weight_map\n", path, ts->valuedouble,
               cJSON_GetArraySize(wm));
    } else {
        printf("\n%s: not a readable index (see 'stshard verify')\n", path);
    }
done:
    cJSON_Delete(root);
    free(text);
    if (f)
        fclose(f);
    free(path);
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, opts_done = 0;
    totals t = {0, 0, 0, 0};
    struct stat st;
    char **files = NULL;
    size_t n = 0;
    char size[32];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(inspect_usage, stdout);
            return CLI_OK;
        } else if (!opts_done && strcmp(a, "--json") == 0) {
            json = 1;
        } else if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (path) {
            return cli_usage_error("inspect", "only one PATH may be given");
        } else {
            path = a;
        }
    }
    if (!path)
        return cli_usage_error("inspect", "missing PATH");
    if (stat(path, &st) != 0) {
        int e = errno;
        int code = e == EACCES                   ? STS_E_ACCESS
                   : e == ENOENT || e == ENOTDIR ? STS_E_NOENT
                                                 : STS_E_IO;
        cli_error("inspect", code, "%s: %s", path, strerror(e));
        return sts_exit_status(code);
    }
    if (S_ISDIR(st.st_mode)) {
        t.status = list_safetensors(path, &files, &n);
        if (t.status != CLI_OK)
            goto done;
    }
    if (json) {
        printf("{\n  \"path\": ");
        cli_json_string(stdout, path);
        printf(",\n  \"files\": [\n");
    }
    if (files) {
        for (size_t i = 0; i < n; i++) {
            if (!json && i > 0)
                putchar('\n');
            inspect_file(files[i], json, &t);
        }
    } else {
        inspect_file(path, json, &t);
    }
    if (json)
        printf("\n  ]");
    if (files)
        inspect_index(path, json);
    if (json)
        printf(",\n  \"totals\": {\"files\": %llu, \"tensors\": %llu, \"bytes\": %llu}\n}\n",
               (unsigned long long)t.files, (unsigned long long)t.tensors,
               (unsigned long long)t.bytes);
    else
        printf("\ntotal: %llu file%s, %llu tensors, %llu bytes (%s) of tensor data\n",
               (unsigned long long)t.files, t.files == 1 ? "" : "s", (unsigned long long)t.tensors,
               (unsigned long long)t.bytes, cli_format_bytes(t.bytes, size, sizeof size));
done:
    sts_ckpt_names_free(files, n);
    if (fflush(stdout) != 0)
        return CLI_IO;
    return t.status;
}
