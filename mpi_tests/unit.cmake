# Serial unit tests of the pure modules.
sts_test_program(unit_dtype unit_dtype.c)
sts_add_unit_test(NAME unit_dtype COMMAND $<TARGET_FILE:unit_dtype>)
