# Consolidation: the pure planner (serial), its scaling benchmark, and the
# collective consolidation under mpiexec.
sts_test_program(unit_plan unit_plan.c)
sts_add_unit_test(NAME unit_plan COMMAND $<TARGET_FILE:unit_plan>)
