# The offset-read loader (src/reader.c, src/readio.c) and resharding.
sts_test_program(par_read par_read.c)
sts_add_mpi_test(NAME par_read NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read> TIMEOUT 120)
sts_test_program(par_read_errors par_read_errors.c)
sts_add_mpi_test(NAME par_read_errors NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_errors>
                 TIMEOUT 120)
sts_test_program(par_read_bytes par_read_bytes.c)
sts_add_mpi_test(NAME par_read_bytes NP 1 2 4 COMMAND $<TARGET_FILE:par_read_bytes> TIMEOUT 120)
