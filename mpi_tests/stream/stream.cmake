# The streaming writer (src/writer_stream.c: sts_writer_begin / _stores / _put)
# and `stshard reshard` in memory bounded by --batch.
sts_test_program(par_writer_stream par_writer_stream.c)
sts_add_mpi_test(NAME par_writer_stream NP 1 2 3 4
                 COMMAND $<TARGET_FILE:par_writer_stream> ${STS_TEST_WORK}/writer_stream TIMEOUT 120)

# Error cases: the same code on every rank, nothing published, no temporary file left.
sts_test_program(par_writer_stream_errors par_writer_stream_errors.c)
sts_add_mpi_test(NAME par_writer_stream_errors NP 1 2 3 4
                 COMMAND $<TARGET_FILE:par_writer_stream_errors> ${STS_TEST_WORK}/writer_stream_errors
                 TIMEOUT 120)
if(STS_FAULT_INJECTION)
  # Rank 1's second MPI-IO write (its first put after the header) fails.
  sts_add_mpi_test(NAME par_writer_stream_fault NP 2 3
                   COMMAND $<TARGET_FILE:par_writer_stream_errors> ${STS_TEST_WORK}/writer_stream_errors
                           --fault
                   TIMEOUT 120)
  sts_test_nps(STREAM_FAULT_NPS 2 3)
  foreach(np ${STREAM_FAULT_NPS})
    set_property(TEST par_writer_stream_fault_np${np} APPEND PROPERTY ENVIRONMENT
                 "STSHARD_FAULT=point=write,rank=1,hit=2")
  endforeach()
endif()

# `stshard reshard` streams: peak RSS below half a rank's share (+ 64 MiB) with --batch 8MiB,
# every element kept; and a failure on one rank mid-stream stops all, publishing nothing.
if(TARGET stshard_cli)
  add_test(NAME reshard_stream_memory
           COMMAND ${STS_TESTS_DIR}/stream/par_reshard_mem.sh ${STS_TEST_WORK}/reshard_stream_memory
                   $<TARGET_FILE:stshard_cli> ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                   ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(reshard_stream_memory PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
  if(STS_FAULT_INJECTION)
    add_test(NAME reshard_stream_fault
             COMMAND ${STS_TESTS_DIR}/stream/par_reshard_fault.sh ${STS_TEST_WORK}/reshard_stream_fault
                     $<TARGET_FILE:stshard_cli> ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                     ${MPIEXEC_PREFLAGS}
             WORKING_DIRECTORY ${STS_TEST_WORK})
    set_tests_properties(reshard_stream_fault PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                         ENVIRONMENT "${STS_TEST_ENV}")
  endif()
endif()
