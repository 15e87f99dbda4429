# libFuzzer harnesses beyond the header codec (STS_FUZZ=ON, clang only): the
# coverage check, the mapping / index readers (and verify's index checks),
# and the consolidation planner.  Each runs as a ctest with label "fuzz" for
# a bounded time, seeded from a committed corpus under fuzz/corpus/<target>/.
# fuzz.cmake (included before this file) builds the archive they link.
if(NOT STS_FUZZ OR NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  return()
endif()


set(STS_FUZZ_MORE_DIR ${STS_TESTS_DIR}/fuzz)

# rel_add_fuzz_target(name [DICT file] [SECONDS s]): builds fuzz/<name>.c and
# registers a test that copies fuzz/corpus/<name>/ into a scratch directory
# (libFuzzer adds new inputs to its first corpus directory) and fuzzes for
# SECONDS (default 20).
function(rel_add_fuzz_target name)
  cmake_parse_arguments(F "" "DICT;SECONDS" "" ${ARGN})
  if(NOT F_SECONDS)
    set(F_SECONDS 20)
  endif()
  set(dict "")
  if(F_DICT)
    set(dict "-dict='${F_DICT}'")
  endif()
  add_executable(${name} ${STS_FUZZ_MORE_DIR}/${name}.c)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE stshard_fuzzlib)
  sts_target_warnings(${name})
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name})
  set(seeds ${STS_FUZZ_MORE_DIR}/corpus/${name})
  add_test(NAME ${name}
           COMMAND sh -c "rm -rf '${work}' && mkdir -p '${work}' && cp '${seeds}'/* '${work}/' && exec '$<TARGET_FILE:${name}>' -max_total_time=${F_SECONDS} -timeout=10 -rss_limit_mb=2048 ${dict} -print_final_stats=1 '${work}'")
  set_tests_properties(${name} PROPERTIES LABELS "fuzz" TIMEOUT 180 COST ${F_SECONDS})
endfunction()

rel_add_fuzz_target(fuzz_coverage)
rel_add_fuzz_target(fuzz_mapping DICT ${STS_FUZZ_MORE_DIR}/mapping.dict)
rel_add_fuzz_target(fuzz_plan)
