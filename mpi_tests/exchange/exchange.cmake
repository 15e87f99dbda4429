# The record exchange (src/exchange.c): every byte of random parts through the three
# exchanges, and one rank failing (rc_in, or its allocation through the fault switch) makes
# every rank return the same code; the timeout is the watchdog against a rank left waiting.
sts_test_program(par_xchg par_xchg.c)
sts_add_mpi_test(NAME par_xchg NP 1 2 3 4 COMMAND $<TARGET_FILE:par_xchg> TIMEOUT 120)
if(STS_FAULT_INJECTION)
  sts_add_mpi_test(NAME par_xchg_fault NP 1 2 3 4 COMMAND $<TARGET_FILE:par_xchg> fault
                   TIMEOUT 120)
endif()
