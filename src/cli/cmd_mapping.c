/*
 * cmd_mapping.c - `stshard mapping --reference DIR`: the tensor -> file index
 * mapping a reference model implies (docs/format.md §4), as JSON for consolidate
 * --mapping.
 */
#include <string.h>

#include "cli.h"

static const char mapping_usage[] =
    "Usage: stshard mapping --reference MODEL_DIR [-o FILE]\n"
    "\n"
    "Prints the {\"tensor\": file_index} mapping of a reference model directory:\n"
    "from model.safetensors.index.json (weight_map), or all tensors -> 1 for a\n"
    "single model.safetensors.  A file's index is K from its name\n"
    "'...-K-of-N.safetensors' when those indices are exactly 1..N over the\n"
    "distinct files; otherwise the files are numbered 1..N in sorted name order.\n"
    "\n"
    "Options:\n"
    "  --reference DIR  the reference model directory (required)\n"
    "  -o, --output FILE  write the JSON to FILE instead of standard output\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 ok, 1 invalid index or model file, 2 usage, 3 I/O error\n"
    "(e.g. neither file exists).\n";

/* Takes the value of option argv[*i] (as the next argument or after '='). */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == '\0' || (a[n] == '=' && name[1] == '-'));
}

int cmd_mapping(int argc, char **argv)
{
    const char *ref = NULL, *out = "-";
    sts_mapping *m = NULL;
    sts_diag diag;
    int rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(mapping_usage, stdout);
            return CLI_OK;
        } else if (is_opt(a, "--reference")) {
            ref = option_value(argc, argv, &i, "--reference");
            if (!ref)
                return cli_usage_error("mapping", "--reference needs a directory");
        } else if (is_opt(a, "-o") || is_opt(a, "--output")) {
            out = option_value(argc, argv, &i, a[1] == '-' ? "--output" : "-o");
            if (!out)
                return cli_usage_error("mapping", "%s needs a file name", a);
        } else {
            return cli_usage_error("mapping", "unexpected argument '%s'", a);
        }
    }
    if (!ref)
        return cli_usage_error("mapping", "--reference MODEL_DIR is required");
    rc = sts_mapping_from_reference(ref, &m, &diag);
    if (rc == STS_OK)
        rc = sts_mapping_write_json(m, out, &diag);
    if (rc != STS_OK)
        cli_error("mapping", rc, "%s", cli_diag_text(&diag));
    sts_mapping_free(m);
    return sts_exit_status(rc);
}
