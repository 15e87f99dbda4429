# `stshard bench`: the structure of its table and JSON report (never a
# timing), the directory it works in, and its exit statuses.  Tiny models, so
# these are ordinary tests (labels mpi;cli), not benchmarks.
if(NOT TARGET stshard_cli)
  return()
endif()

find_package(Python3 COMPONENTS Interpreter QUIET)
set(BENCH_PY "")
if(Python3_Interpreter_FOUND)
  set(BENCH_PY ${Python3_EXECUTABLE})
endif()
set(BENCH_ALL_OPS save,consolidate,load,fpp-write,fpp-read,shared-write,shared-read)

# bench_cli_test(name np iters ops keep check bench-args...)
function(bench_cli_test name np iters ops keep check)
  add_test(NAME bench_cli_${name}_np${np}
           COMMAND ${STS_TESTS_DIR}/bench/bench_cli.sh
                   ${STS_TEST_WORK}/bench_cli_${name}_np${np} $<TARGET_FILE:stshard_cli>
                   "${BENCH_PY}" ${np} ${iters} ${ops} ${keep} ${check} --
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} --
                   ${ARGN}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(bench_cli_${name}_np${np} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()

# Every phase and baseline, read back and compared, at 1-4 ranks.
sts_test_nps(BENCH_NPS 1 2 3 4)
foreach(np ${BENCH_NPS})
  bench_cli_test(all ${np} 2 ${BENCH_ALL_OPS} 0 1
                 --model llama:4MiB --iterations 2 --baseline --check --transfer-size 1MiB)
endforeach()
# Phases alone: the untimed setup save feeds them; other strategies and dtypes; --keep.
bench_cli_test(cons_load_row 3 1 consolidate,load 1 1
               --model mixed:3MiB --strategy row --dtype F32 --iterations 1 --phases consolidate,load
               --keep --check)
bench_cli_test(load_mesh2d 4 2 load 0 1
               --model llama:2MiB --strategy mesh2d --iterations 2 --phases load --check)
bench_cli_test(save_fsync_drop 2 3 save 1 0
               --model llama:2MiB --iterations 3 --phases save --fsync --drop-caches --keep)
bench_cli_test(raw_only 2 1 fpp-write,fpp-read,shared-write,shared-read 0 0
               --model llama:2MiB --iterations 1 --phases none --baseline --transfer-size 100000)
# The hints of STSHARD_MPI_HINTS are the baselines' and the report names them.
bench_cli_test(hints 2 1 save,load,fpp-write,fpp-read,shared-write,shared-read 0 0
               --model llama:2MiB --iterations 1 --phases save,load --baseline)
set_tests_properties(bench_cli_hints_np2 PROPERTIES
                     ENVIRONMENT "${STS_TEST_ENV};STSHARD_MPI_HINTS=cb_nodes=1,romio_no_indep_rw=false")

# Exit statuses and messages (mpi_tests/cli/expect.sh).
set(BENCH_MPI ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
    $<TARGET_FILE:stshard_cli> bench)
function(bench_status_test name status)
  add_test(NAME bench_cli_${name} COMMAND ${STS_TESTS_DIR}/cli/expect.sh ${status}
           ${ARGN} WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(bench_cli_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 120
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()
bench_status_test(help 0 -m "^Usage: mpirun -n P stshard bench" -m "--drop-caches" -- ${BENCH_MPI} --help)
bench_status_test(bad_phase 2 -m "--phases: unknown phase 'write' \\(save, consolidate, load, or none\\)"
                  -- ${BENCH_MPI} --phases save,write)
bench_status_test(empty_phase 2 -m "--phases: unknown phase ''" -- ${BENCH_MPI} --phases save,,load)
bench_status_test(none_alone 2 -m "--phases none needs --baseline" -- ${BENCH_MPI} --phases none)
bench_status_test(iterations 2 -m "--iterations must be 1..1000" -- ${BENCH_MPI} --iterations 0)
bench_status_test(transfer 2 -m "--transfer-size must be" -- ${BENCH_MPI} --transfer-size 2GiB)
bench_status_test(bad_option 2 -m "unknown option '--bogus'" -- ${BENCH_MPI} --bogus)
bench_status_test(extra_arg 2 -m "unexpected argument 'x'" -- ${BENCH_MPI} x)
bench_status_test(bad_model 2 -m "unknown model preset 'gpt'" -- ${BENCH_MPI} --model gpt:1MiB)
bench_status_test(dir_is_file 3 -m "IoError: .*/proc/version: cannot make a work directory"
                  -n "^Summary" -- ${BENCH_MPI} --model llama:1MiB --dir /proc/version)
bench_status_test(json_path 3 -m "NotFound: .*/no-such-dir/r.json: cannot write the JSON report"
                  -n "^access" -- ${BENCH_MPI} --model llama:1MiB --json /no-such-dir/r.json)
