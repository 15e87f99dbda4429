# Consolidation: the pure planner's scaling benchmark (its unit test is in
# unit/unit.cmake), and the collective consolidation under mpiexec.
# 4096 rank files x 2000 tensors planned without MPI (prints seconds and peak RSS).
sts_test_program(bench_plan bench_plan.c)
sts_add_unit_test(NAME bench_plan COMMAND $<TARGET_FILE:bench_plan> LABELS bench TIMEOUT 900)

# Collective consolidation with 1..4 ranks of 1..4 generated rank files.
sts_test_program(par_consolidate par_consolidate.c par_consolidate_gen.c)
target_link_libraries(par_consolidate PRIVATE cjson)
sts_add_mpi_test(NAME par_consolidate NP 1 2 3 4 COMMAND $<TARGET_FILE:par_consolidate>
                 TIMEOUT 300)
# The same without the copy_file_range fast path: everything through MPI-IO.
sts_add_mpi_test(NAME par_consolidate_mpiio NP 3 COMMAND $<TARGET_FILE:par_consolidate> mpiio
                 TIMEOUT 300)
set_tests_properties(par_consolidate_mpiio_np3 PROPERTIES
                     ENVIRONMENT "${STS_TEST_ENV};STSHARD_COPY_RANGE=0")

# Invalid inputs: every rank fails with the same code, nothing appears.
sts_test_program(par_consolidate_errors par_consolidate_errors.c par_consolidate_gen.c)
target_link_libraries(par_consolidate_errors PRIVATE cjson)
sts_add_mpi_test(NAME par_consolidate_errors NP 1 2 3 4
                 COMMAND $<TARGET_FILE:par_consolidate_errors> TIMEOUT 300)

# Rank files in PyTorch's byte layout from a stdlib-only Python script, and
# the golden outputs it computes independently.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  set(STS_PYT_FIXTURE ${STS_TEST_WORK}/pytorch_shards)
  add_test(NAME consolidate_pytorch_fixture
           COMMAND ${Python3_EXECUTABLE} ${STS_TESTS_DIR}/consolidate/make_pytorch_shards.py
                   ${STS_PYT_FIXTURE})
  set_tests_properties(consolidate_pytorch_fixture PROPERTIES FIXTURES_SETUP cons_pytorch
                       LABELS "unit")
  sts_test_program(par_consolidate_pytorch par_consolidate_pytorch.c par_consolidate_gen.c)
  target_link_libraries(par_consolidate_pytorch PRIVATE cjson)
  sts_add_mpi_test(NAME par_consolidate_pytorch NP 1 2 3 4
                   COMMAND $<TARGET_FILE:par_consolidate_pytorch> ${STS_PYT_FIXTURE}
                   FIXTURES_REQUIRED cons_pytorch TIMEOUT 120)
endif()

# A tensor of more than 4 GiB (offsets past 2^32; label "long", in /dev/shm
# when there is one) and 100,000 small tensors.
if(IS_DIRECTORY /dev/shm)
  set(STS_BIG_DIR /dev/shm)
else()
  set(STS_BIG_DIR ${STS_TEST_WORK})
endif()
sts_test_program(par_consolidate_big par_consolidate_big.c par_consolidate_gen.c)
target_link_libraries(par_consolidate_big PRIVATE cjson)
# One variant only (8.2 GiB of /dev/shm at once); skipped when space is short.  It shares
# only /dev/shm space, so it locks that (with par_save_large) instead of running alone.
sts_add_mpi_test(NAME par_consolidate_huge NP 3 LABELS long TIMEOUT 900
                 COMMAND $<TARGET_FILE:par_consolidate_big> huge ${STS_BIG_DIR})
set_tests_properties(par_consolidate_huge_np3 PROPERTIES RESOURCE_LOCK shm_large
                     SKIP_RETURN_CODE 77 COST 60)
sts_add_mpi_test(NAME par_consolidate_many NP 1 3 TIMEOUT 600
                 COMMAND $<TARGET_FILE:par_consolidate_big> many ${STS_TEST_WORK})

# Save with P ranks, consolidate with Q ranks (every P, Q up to the mpiexec
# size) against the HDF5 reference tensors of fixtures/gen_fixtures.c.
sts_test_program(par_consolidate_h5 par_consolidate_h5.c par_consolidate_gen.c)
target_link_libraries(par_consolidate_h5 PRIVATE hdf5::hdf5 cjson)
sts_add_mpi_test(NAME par_consolidate_h5 NP 1 2 3 4 TIMEOUT 300 FIXTURES_REQUIRED save_h5
                 COMMAND $<TARGET_FILE:par_consolidate_h5> ${STS_TEST_WORK}/fixtures.h5
                         ${STS_TEST_WORK})

# --- stshard consolidate (the tool under mpiexec) ---------------------------
if(NOT TARGET stshard_cli OR NOT Python3_Interpreter_FOUND)
  return()
endif()
set(CONS_MPI ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
add_test(NAME consolidate_cli_roundtrip
         COMMAND ${STS_TESTS_DIR}/consolidate/cli_roundtrip.sh $<TARGET_FILE:stshard_cli>
                 ${STS_TEST_WORK}/consolidate_cli ${STS_PYT_FIXTURE} -- ${MPIEXEC_EXECUTABLE}
                 ${MPIEXEC_PREFLAGS}
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(consolidate_cli_roundtrip PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                     ENVIRONMENT "${STS_TEST_ENV}" FIXTURES_REQUIRED cons_pytorch)

# Exit statuses and messages, the same on every rank (cli/expect.sh).
function(consolidate_status_test name status)
  add_test(NAME consolidate_cli_${name}
           COMMAND ${STS_TESTS_DIR}/cli/expect.sh ${status} ${ARGN}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(consolidate_cli_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 120
                       ENVIRONMENT "${STS_TEST_ENV}" FIXTURES_REQUIRED cons_pytorch)
endfunction()
set(CONS ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
    $<TARGET_FILE:stshard_cli> consolidate)
consolidate_status_test(help 0 -m "^Usage: mpirun -n P stshard consolidate" -m "--max-file-size"
                        -- ${CONS} --help)
consolidate_status_test(no_args 2 -m "INDIR and OUTDIR are required" -- ${CONS})
consolidate_status_test(exclusive 2 -m "exclude each other" --
                        ${CONS} a b --mapping m.json --max-file-size 5GB)
consolidate_status_test(bad_layout 2 -m "canonical or pytorch" -- ${CONS} a b --layout hf)
consolidate_status_test(bad_align 2 -m "multiple of 8" -- ${CONS} a b --align 12)
consolidate_status_test(no_input 3 -m "NotFound" -- ${CONS} /nonexistent/in cons_cli_out)
consolidate_status_test(same_dir 2 -m "is the input directory" --
                        ${CONS} ${STS_PYT_FIXTURE}/shards ${STS_PYT_FIXTURE}/shards/)
# A consolidated checkpoint is not a set of rank files: no DCP metadata.
consolidate_status_test(no_dcp 1 -m "InvalidShardingInfo" -m "model-00001-of-00001" --
                        ${CONS} ${STS_PYT_FIXTURE}/expected/canonical cons_cli_nodcp)
consolidate_status_test(missing_mapping 3 -m "NotFound" --
                        ${CONS} ${STS_PYT_FIXTURE}/shards cons_cli_nomap --mapping /nonexistent.json)
