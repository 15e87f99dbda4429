# The streaming writer (src/writer_stream.c: sts_writer_begin / _stores / _put)
# and `stshard reshard` in memory bounded by --batch.
sts_test_program(par_writer_stream par_writer_stream.c)
sts_add_mpi_test(NAME par_writer_stream NP 1 2 3 4
                 COMMAND $<TARGET_FILE:par_writer_stream> ${STS_TEST_WORK}/writer_stream TIMEOUT 120)
