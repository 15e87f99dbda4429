# Serial unit tests of the pure modules.
sts_test_program(unit_dtype unit_dtype.c)
sts_add_unit_test(NAME unit_dtype COMMAND $<TARGET_FILE:unit_dtype>)

# The record exchange's unit arithmetic past 2 GiB (pure; the MPI side is par_xchg).
sts_test_program(unit_exchange unit_exchange.c)
sts_add_unit_test(NAME unit_exchange COMMAND $<TARGET_FILE:unit_exchange>)
