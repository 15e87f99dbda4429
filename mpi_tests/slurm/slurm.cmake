# The Slurm templates (scripts/slurm/) on a real one-node Slurm cluster, and on
# a two-node one made of simulated hosts (mpi_tests/cluster/cluster.sh), that
# mpi_tests/slurm/slurm-test.sh starts and stops (installs slurm-wlm and munge
# when missing; needs root, skipped with status 77 otherwise).  Label slurm;
# RUN_SERIAL, since it starts daemons and its jobs use the machine's cores.
# Not in sanitizer builds: the preloaded sanitizer helpers would reach the
# Slurm daemons through the environment.
if(NOT TARGET stshard_cli OR STS_SANITIZE)
  return()
endif()
add_test(NAME slurm_consolidate
         COMMAND ${STS_TESTS_DIR}/slurm/slurm-test.sh ${STS_TEST_WORK}/slurm-state
                 --run ${STS_TESTS_DIR}/slurm/consolidate-job.sh
                 $<TARGET_FILE:stshard_cli> ${PROJECT_SOURCE_DIR} ${STS_TEST_WORK}/slurm-job
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(slurm_consolidate PROPERTIES LABELS "slurm" TIMEOUT 300 RUN_SERIAL TRUE
                     SKIP_RETURN_CODE 77 ENVIRONMENT "${STS_TEST_ENV};STS_SLURM_TIMEOUT=120")
# -N 2 jobs: slurmd on two hosts with their own names and addresses; save,
# consolidate (srun and mpirun) and load, equal to one host's results.
add_test(NAME slurm_two_node
         COMMAND ${STS_TESTS_DIR}/slurm/slurm-test.sh ${STS_TEST_WORK}/slurm2-state
                 --nodes 2 --run ${STS_TESTS_DIR}/slurm/two-node-job.sh
                 $<TARGET_FILE:stshard_cli> ${PROJECT_SOURCE_DIR} ${STS_TEST_WORK}/slurm2-job
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(slurm_two_node PROPERTIES LABELS "slurm;cluster" TIMEOUT 300 RUN_SERIAL TRUE
                     SKIP_RETURN_CODE 77 ENVIRONMENT "${STS_TEST_ENV};STS_SLURM_TIMEOUT=120")
