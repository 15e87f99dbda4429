# Serial unit tests of the pure modules (label unit: no MPI_Init, no mpiexec).
sts_test_program(unit_dtype unit_dtype.c)
sts_add_unit_test(NAME unit_dtype COMMAND $<TARGET_FILE:unit_dtype>)

# The record exchange's unit arithmetic past 2 GiB (pure; the MPI side is par_xchg).
sts_test_program(unit_exchange unit_exchange.c)
sts_add_unit_test(NAME unit_exchange COMMAND $<TARGET_FILE:unit_exchange>)

# The header codec.
sts_test_program(unit_header unit_header.c)
sts_add_unit_test(NAME unit_header COMMAND $<TARGET_FILE:unit_header>)

# The coverage check and the mapping module.
sts_test_program(unit_coverage unit_coverage.c)
sts_add_unit_test(NAME unit_coverage COMMAND $<TARGET_FILE:unit_coverage>)
sts_test_program(unit_mapping unit_mapping.c)
target_link_libraries(unit_mapping PRIVATE cjson)
sts_add_unit_test(NAME unit_mapping COMMAND $<TARGET_FILE:unit_mapping>)

# The consolidation planner.
sts_test_program(unit_plan unit_plan.c)
sts_add_unit_test(NAME unit_plan COMMAND $<TARGET_FILE:unit_plan>)

# The synthetic model of `stshard save` (pure functions, no MPI).
sts_test_program(unit_model unit_model.c ${PROJECT_SOURCE_DIR}/src/cli/model.c
                 ${PROJECT_SOURCE_DIR}/src/cli/common.c)
target_include_directories(unit_model PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
sts_add_unit_test(NAME unit_model COMMAND $<TARGET_FILE:unit_model>)

# The shared lower-layer helpers (src/json_write.c, src/hashtab.c, sts__grow): exact bytes, table behaviour.
sts_test_program(unit_json_write unit_json_write.c)
sts_add_unit_test(NAME unit_json_write COMMAND $<TARGET_FILE:unit_json_write>)

sts_test_program(unit_hashtab unit_hashtab.c)
sts_add_unit_test(NAME unit_hashtab COMMAND $<TARGET_FILE:unit_hashtab>)
