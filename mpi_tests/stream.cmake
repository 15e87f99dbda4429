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
  foreach(np 2 3)
    set_property(TEST par_writer_stream_fault_np${np} APPEND PROPERTY ENVIRONMENT
                 "STSHARD_FAULT=point=write,rank=1,hit=2")
  endforeach()
endif()
