/*
 * asan_keepdl.c - preloaded into sanitizer test runs only.
 *
 * Open MPI dlcloses its plugins in MPI_Finalize.  LeakSanitizer runs after
 * that, so the allocations those plugins keep alive on purpose show up with
 * "<unknown module>" frames that no suppression can name.  Making dlclose a
 * no-op keeps the plugins mapped: their frames keep their library names and
 * lsan-openmpi.supp can suppress them, while leaks in our code still fail.
 */
int dlclose(void *handle);

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
