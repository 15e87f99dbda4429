# MoE-shaped rank files (many tiny tensors, each split over every file) from
# gen_moe.c: their consolidation is checked value by value, and
# scripts/bench-meta.sh measures how consolidation metadata scales with ranks;
# dsave_moe.c saves the same model with the direct save.
# (gen_moe is built in fixtures/fixtures.cmake.)

if(NOT TARGET stshard_cli)
  return()
endif()

# gen_moe's output consolidates correctly (value by value) with 1-3 ranks.
sts_test_nps(META_NPS 1 2 3)
foreach(np ${META_NPS})
  add_test(NAME consolidate_moe_np${np}
           COMMAND ${STS_TESTS_DIR}/consolidate/moe_check.sh $<TARGET_FILE:gen_moe>
                   $<TARGET_FILE:stshard_cli> ${STS_TEST_WORK}/moe_np${np} ${np} --
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(consolidate_moe_np${np} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endforeach()

# The direct save of the same model (dsave_moe) equals consolidate's output.
foreach(np ${META_NPS})
  add_test(NAME direct_moe_np${np}
           COMMAND ${STS_TESTS_DIR}/consolidate/moe_direct.sh $<TARGET_FILE:gen_moe>
                   $<TARGET_FILE:dsave_moe> $<TARGET_FILE:stshard_cli> ${STS_TEST_WORK}/dmoe_np${np}
                   ${np} -- ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(direct_moe_np${np} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endforeach()

# scripts/bench-meta.sh on a small case: the table's form, never a timing.
add_test(NAME bench_meta
         COMMAND ${STS_TESTS_DIR}/consolidate/bench_meta_check.sh ${PROJECT_SOURCE_DIR}
                 ${PROJECT_BINARY_DIR} ${STS_TEST_WORK}/bench_meta -- ${MPIEXEC_EXECUTABLE}
                 ${MPIEXEC_PREFLAGS}
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(bench_meta PROPERTIES LABELS "bench" TIMEOUT 600
                     ENVIRONMENT "${STS_TEST_ENV}")
