# Sharded save: HDF5 reference tensors (setup fixture), the writer API at 1-4
# ranks, error cases, a block over 2 GiB, and `stshard save` for every strategy.

# The reference tensors (fixture save_h5, test save_gen_fixtures) come from
# fixtures/fixtures.cmake; the synthetic model's unit test from unit/unit.cmake.
set(STS_FIXTURES_H5 ${STS_TEST_WORK}/fixtures.h5)

sts_test_program(par_save par_save.c)
target_link_libraries(par_save PRIVATE hdf5::hdf5)
set(STS_PAR_SAVE_DIRS)
sts_test_nps(SAVE_NPS 1 2 3 4)
foreach(np ${SAVE_NPS})
  sts_add_mpi_test(NAME par_save NP ${np} TIMEOUT 120 FIXTURES_REQUIRED save_h5
                   COMMAND $<TARGET_FILE:par_save> ${STS_FIXTURES_H5} ${STS_TEST_WORK}/par_save_np${np})
  set_tests_properties(par_save_np${np} PROPERTIES FIXTURES_SETUP save_out)
  list(APPEND STS_PAR_SAVE_DIRS ${STS_TEST_WORK}/par_save_np${np})
endforeach()

# An independent reader: Python's json module re-serializes DCP_SHARDING_INFO byte for byte.
find_program(STS_PYTHON3 python3)
if(STS_PYTHON3)
  sts_add_unit_test(NAME save_python_json LABELS mpi
                    COMMAND ${STS_PYTHON3} ${STS_TESTS_DIR}/save/par_save_pyjson.py
                            ${STS_PAR_SAVE_DIRS})
  set_tests_properties(save_python_json PROPERTIES FIXTURES_REQUIRED save_out)
endif()

# The API beyond the fixtures: many tiny tensors, empty ranks, replica balance, misuse.
sts_test_program(par_save_api par_save_api.c)
sts_add_mpi_test(NAME par_save_api NP 1 2 3 4 TIMEOUT 120
                 COMMAND $<TARGET_FILE:par_save_api> ${STS_TEST_WORK}/par_save_api)

# Failures: same code and message on every rank, nothing left behind.  The
# tmpfs cases (read-only, full) mount as root and are skipped otherwise.
sts_test_program(par_save_errors par_save_errors.c)
sts_add_mpi_test(NAME par_save_errors NP 1 2 3 4 TIMEOUT 120
                 COMMAND $<TARGET_FILE:par_save_errors> ${STS_TEST_WORK}/par_save_errors)

# A single block of 2 GiB + 4 bytes, on /dev/shm (skipped without 5 GiB free there).
sts_test_program(par_save_large par_save_large.c ${PROJECT_SOURCE_DIR}/src/cli/model.c
                 ${PROJECT_SOURCE_DIR}/src/cli/common.c)
target_include_directories(par_save_large PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
sts_add_mpi_test(NAME par_save_large NP 1 2 TIMEOUT 600 LABELS long
                 COMMAND $<TARGET_FILE:par_save_large> /dev/shm/stshard_par_save_large)
sts_test_nps(SAVE_LARGE_NPS 1 2)
foreach(np ${SAVE_LARGE_NPS})
  set_tests_properties(par_save_large_np${np} PROPERTIES SKIP_RETURN_CODE 77
                       RESOURCE_LOCK shm_large COST 40)
endforeach()

# --- stshard save (needs the tool, and the verify/mapping modules it brings) ---
if(NOT TARGET stshard_cli)
  return()
endif()

sts_test_program(par_save_check par_save_check.c ${PROJECT_SOURCE_DIR}/src/cli/model.c
                 ${PROJECT_SOURCE_DIR}/src/cli/common.c)
target_include_directories(par_save_check PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)

# save_cli_test(name np model strategy dtype files): save, then check every block and element.
function(save_cli_test name np model strategy dtype files)
  add_test(NAME save_cli_${name}_np${np}
           COMMAND ${STS_TESTS_DIR}/save/par_save_cli.sh
                   ${STS_TEST_WORK}/save_cli_${name}_np${np} ${model} ${strategy} ${dtype} ${np}
                   ${files} $<TARGET_FILE:par_save_check> $<TARGET_FILE:stshard_cli> --
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(save_cli_${name}_np${np} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()

foreach(np ${SAVE_NPS})
  foreach(strategy tp row col mesh2d)
    save_cli_test(llama_${strategy} ${np} llama:4MiB ${strategy} BF16 0)
  endforeach()
  save_cli_test(mixed_tp ${np} mixed:3MiB tp F32 0)
  save_cli_test(mixed_mesh2d ${np} mixed:3MiB mesh2d F8_E4M3 0)
  save_cli_test(mapping_tp ${np} llama:2MiB tp BF16 3)
  save_cli_test(mapping_row ${np} mixed:2MiB row F16 2)
endforeach()

# Exit statuses: the same on every rank (mpirun reports a failing rank's status).
set(EXPECT ${STS_TESTS_DIR}/cli/expect.sh)
set(SAVE_MPI ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
    $<TARGET_FILE:stshard_cli> save)
function(save_status_test name status)
  add_test(NAME save_cli_${name} COMMAND ${EXPECT} ${status} ${ARGN}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(save_cli_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 120
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()
save_status_test(help 0 -m "^Usage: mpirun -n P stshard save" -m "mesh2d" --
                 ${SAVE_MPI} --help)
save_status_test(no_model 2 -m "--model PRESET:SIZE is required" -- ${SAVE_MPI} x)
save_status_test(bad_strategy 2 -m "unknown strategy 'diag'" --
                 ${SAVE_MPI} x --model llama:1MiB --strategy diag)
save_status_test(bad_preset 2 -m "unknown model preset 'gpt'" -- ${SAVE_MPI} x --model gpt:1MiB)
save_status_test(too_small 2 -m "too small" -- ${SAVE_MPI} x --model llama:10KiB)
save_status_test(bad_dtype 2 -m "whole bytes" -- ${SAVE_MPI} x --model llama:1MiB --dtype F4)
save_status_test(file_as_dir 3 -m "AlreadyExists" -m "not a directory" --
                 ${SAVE_MPI} /proc/version --model llama:1MiB)
save_status_test(missing_mapping 3 -m "NotFound" --
                 ${SAVE_MPI} save_cli_nomap --model llama:1MiB --mapping /nonexistent.json)
