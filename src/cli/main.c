/*
 * main.c - the stshard tool: dispatches to a subcommand.
 *
 * Only subcommands that talk to other ranks initialise MPI; inspect and
 * verify are plain local programs, so they also run without mpirun.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    cli_cmd_fn fn;
    int needs_mpi;
    const char *summary;
} commands[] = {
    {"inspect", cmd_inspect, 0, "show the tensors, offsets and metadata of a file or checkpoint"},
    {"verify", cmd_verify, 0, "strictly validate a file or checkpoint directory"},
    {"save", cmd_save, 1, "save a synthetic model as sharded rank files (benchmark, tests)"},
    {"mapping", cmd_mapping, 0, "print the tensor-to-file mapping of a reference model"},
    {"load", cmd_load, 1, "load a checkpoint into a new sharding with offset reads"},
    {"reshard", cmd_reshard, 1, "rewrite a checkpoint as rank files with a new sharding"},
    {"consolidate", cmd_consolidate, 1, "merge rank files into a Hugging Face checkpoint"},
    {"bench", cmd_bench, 1, "IOR-style throughput of save, consolidate and load"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: stshard COMMAND [OPTIONS] ...\n\n"
               "Sharded safetensors checkpoints with MPI-IO.  Collective commands run\n"
               "under mpirun/srun with any number of ranks.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].needs_mpi ? " (MPI)" : "");
    fprintf(f, "\nRun 'stshard COMMAND --help' for a command's options.\n"
               "Exit status: 0 ok, 1 invalid input, 2 usage, 3 I/O error, 4 internal error.\n");
}

int main(int argc, char **argv)
{
    int status;
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("stshard %s\n", sts_version_string());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (commands[i].needs_mpi && MPI_Init(&argc, &argv) != MPI_SUCCESS) {
            fprintf(stderr, "stshard %s: MPI_Init failed\n", commands[i].name);
            return CLI_INTERNAL;
        }
        status = commands[i].fn(argc - 1, argv + 1);
        if (commands[i].needs_mpi)
            MPI_Finalize();
        return status;
    }
    fprintf(stderr, "stshard: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
