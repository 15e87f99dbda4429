# libFuzzer harnesses beyond the header codec (STS_FUZZ=ON, clang only): the
# coverage check, the mapping / index readers (and verify's index checks),
# and the consolidation planner.  Each runs as a ctest with label "fuzz" for
# a bounded time, seeded from a committed corpus under fuzz/corpus/<target>/.
# fuzz.cmake (included before this file) sets up the header-codec targets.
if(NOT STS_FUZZ OR NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  return()
endif()

# Every local (non-MPI-IO) module again, instrumented for coverage and the
# sanitizers, so the rest of the build stays as configured.
set(STS_FUZZ_MORE_SOURCES errors.c util.c dtype.c json.c header.c header_access.c
    header_encode.c coverage.c mapping.c verify.c)
if(EXISTS ${PROJECT_SOURCE_DIR}/src/plan.c)
  list(APPEND STS_FUZZ_MORE_SOURCES plan.c plan_layout.c plan_chunk.c)
endif()
list(TRANSFORM STS_FUZZ_MORE_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/src/)
add_library(stshard_fuzzlib_more STATIC ${STS_FUZZ_MORE_SOURCES})
target_include_directories(stshard_fuzzlib_more PUBLIC ${PROJECT_SOURCE_DIR}/include
                                                       ${PROJECT_SOURCE_DIR}/src)
target_compile_options(stshard_fuzzlib_more PRIVATE
                       -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
target_link_libraries(stshard_fuzzlib_more PUBLIC MPI::MPI_C cjson)
sts_target_warnings(stshard_fuzzlib_more)

set(STS_FUZZ_MORE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

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
  target_link_libraries(${name} PRIVATE stshard_fuzzlib_more)
  sts_target_warnings(${name})
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name})
  set(seeds ${STS_FUZZ_MORE_DIR}/corpus/${name})
  add_test(NAME ${name}
           COMMAND sh -c "rm -rf '${work}' && mkdir -p '${work}' && cp '${seeds}'/* '${work}/' && exec '$<TARGET_FILE:${name}>' -max_total_time=${F_SECONDS} -timeout=10 -rss_limit_mb=2048 ${dict} -print_final_stats=1 '${work}'")
  set_tests_properties(${name} PROPERTIES LABELS "fuzz" TIMEOUT 180)
endfunction()

rel_add_fuzz_target(fuzz_coverage)
rel_add_fuzz_target(fuzz_mapping DICT ${STS_FUZZ_MORE_DIR}/mapping.dict)
if(EXISTS ${PROJECT_SOURCE_DIR}/src/plan.c)
  rel_add_fuzz_target(fuzz_plan)
endif()
