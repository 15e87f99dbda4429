# libFuzzer harnesses for the header codec (STS_FUZZ=ON, clang only).  Each
# runs as a ctest with label "fuzz" for a 20-second smoke run seeded from the
# corpus.  libFuzzer writes new inputs into its first corpus directory, so the
# seeds are copied into a scratch directory of the build tree first.
if(NOT STS_FUZZ)
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "STS_FUZZ needs clang; the fuzz targets are skipped")
  return()
endif()

# The format and plan layers again (src/CMakeLists.txt lists them), built with
# coverage instrumentation for libFuzzer and the sanitizers; the library the
# tests use stays as configured.  One archive serves every harness.
set(STS_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
add_library(stshard_fuzzlib STATIC ${STS_FORMAT_SOURCES} ${STS_PLAN_SOURCES})
target_include_directories(stshard_fuzzlib PUBLIC ${PROJECT_SOURCE_DIR}/include
                                                  ${PROJECT_SOURCE_DIR}/src)
target_compile_options(stshard_fuzzlib PRIVATE ${STS_FUZZ_FLAGS})
target_link_libraries(stshard_fuzzlib PUBLIC MPI::MPI_C cjson)
sts_target_warnings(stshard_fuzzlib)

set(STS_FUZZ_DIR ${STS_TESTS_DIR}/fuzz)
foreach(fz fuzz_header fuzz_sharding)
  add_executable(${fz} ${STS_FUZZ_DIR}/${fz}.c)
  target_compile_options(${fz} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(${fz} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${fz} PRIVATE stshard_fuzzlib)
  sts_target_warnings(${fz})
endforeach()

# sts_add_fuzz_test(name seed_dir...): copy the seeds, then fuzz for 20 s.
function(sts_add_fuzz_test name)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name})
  set(copy "")
  foreach(dir ${ARGN})
    string(APPEND copy " && cp '${dir}'/* '${work}/'")
  endforeach()
  add_test(NAME ${name}
           COMMAND sh -c "rm -rf '${work}' && mkdir -p '${work}'${copy} && exec '$<TARGET_FILE:${name}>' -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -dict='${STS_FUZZ_DIR}/header.dict' -print_final_stats=1 '${work}'")
  # COST: 20 s of fuzzing, started first when there is no CTestCostData yet.
  set_tests_properties(${name} PROPERTIES LABELS "fuzz" TIMEOUT 120 COST 20)
endfunction()

sts_add_fuzz_test(fuzz_header ${STS_CORPUS_DIR}/bad ${STS_CORPUS_DIR}/good)
sts_add_fuzz_test(fuzz_sharding ${STS_FUZZ_DIR}/sharding_seeds ${STS_CORPUS_DIR}/good)
