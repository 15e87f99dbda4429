# Consolidation: the pure planner (serial), its scaling benchmark, and the
# collective consolidation under mpiexec.
sts_test_program(unit_plan unit_plan.c)
sts_add_unit_test(NAME unit_plan COMMAND $<TARGET_FILE:unit_plan>)

# Collective consolidation with 1..4 ranks of 1..4 generated rank files.
sts_test_program(par_consolidate par_consolidate.c par_consolidate_gen.c)
target_link_libraries(par_consolidate PRIVATE cjson)
sts_add_mpi_test(NAME par_consolidate NP 1 2 3 4 COMMAND $<TARGET_FILE:par_consolidate>
                 TIMEOUT 300)
