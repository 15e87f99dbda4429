# stshard on a simulated cluster: three hosts, each a network namespace with
# its own host name on a private bridge, Open MPI's mpirun starting the remote
# daemons through an ssh-like agent, TCP only (mpi_tests/cluster/, docs/hpc.md
# "The simulated cluster").  Needs root for the namespaces: skipped with
# status 77 otherwise.  Label cluster; RUN_SERIAL, since the kill test times a
# SIGKILL against real processes and every run uses the machine's cores.  Not
# in sanitizer builds: the preloaded sanitizer helpers would not reach the
# ranks through the agent's clean environment.
if(NOT TARGET stshard_cli OR STS_SANITIZE)
  return()
endif()
set(STS_CLUSTER_TEST ${STS_TESTS_DIR}/cluster/cluster-test.sh)
function(sts_cluster_test mode)
  add_test(NAME cluster_${mode}
           COMMAND ${STS_CLUSTER_TEST} ${mode} $<TARGET_FILE:stshard_cli>
                   ${STS_TEST_WORK}/cluster-${mode} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(cluster_${mode} PROPERTIES LABELS "cluster" TIMEOUT 240 RUN_SERIAL TRUE
                       SKIP_RETURN_CODE 77 ENVIRONMENT "${STS_TEST_ENV}")
endfunction()
# save, consolidate, load, reshard, direct and one-call saves: byte for byte the
# one-host results.
sts_cluster_test(tools)
# A rank SIGKILLed on the second host: nothing published, no process left on any
# host.  The rank is held in place by the fault switch.
if(STS_FAULT_INJECTION)
  sts_cluster_test(kill)
endif()
