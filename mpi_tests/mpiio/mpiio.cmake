# The MPI-IO layer.
sts_test_program(par_mpiio par_mpiio.c)
sts_add_mpi_test(NAME par_mpiio NP 1 2 3 4 COMMAND $<TARGET_FILE:par_mpiio> TIMEOUT 120)
