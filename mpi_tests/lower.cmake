# Serial unit tests of the shared lower-layer helpers (src/json_write.c,
# src/hashtab.c): exact bytes and table behaviour, no MPI calls.
sts_test_program(unit_json_write unit_json_write.c)
sts_add_unit_test(NAME unit_json_write COMMAND $<TARGET_FILE:unit_json_write>)

sts_test_program(unit_hashtab unit_hashtab.c)
sts_add_unit_test(NAME unit_hashtab COMMAND $<TARGET_FILE:unit_hashtab>)
