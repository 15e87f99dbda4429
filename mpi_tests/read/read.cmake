# The offset-read loader (src/reader.c, src/reader_io.c) and resharding.
sts_test_program(par_read par_read.c)
sts_add_mpi_test(NAME par_read NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read> TIMEOUT 120)
sts_test_program(par_read_errors par_read_errors.c)
sts_add_mpi_test(NAME par_read_errors NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_errors>
                 TIMEOUT 120)
sts_test_program(par_read_bytes par_read_bytes.c)
sts_add_mpi_test(NAME par_read_bytes NP 1 2 4 COMMAND $<TARGET_FILE:par_read_bytes> TIMEOUT 120)
# Two-phase reads: exact bytes once per byte, against the direct path, and a failed read.
sts_test_program(par_read_xchg par_read_xchg.c)
sts_add_mpi_test(NAME par_read_xchg NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_xchg> TIMEOUT 120)
sts_test_program(par_read_xchg_random par_read_xchg_random.c)
sts_add_mpi_test(NAME par_read_xchg_random NP 1 2 3 4
                 COMMAND $<TARGET_FILE:par_read_xchg_random> 200 1 TIMEOUT 300)
if(STS_FAULT_INJECTION)
  sts_add_mpi_test(NAME par_read_xchg_fault NP 2 4 COMMAND $<TARGET_FILE:par_read_xchg> fault
                   TIMEOUT 120)
  sts_test_nps(READ_FAULT_NPS 2 4)
  foreach(np ${READ_FAULT_NPS})
    set_tests_properties(par_read_xchg_fault_np${np} PROPERTIES ENVIRONMENT
                         "${STS_TEST_ENV};STSHARD_FAULT=point=xchg.read,rank=1,hit=1")
  endforeach()
endif()
# Distributed metadata (stshard_metadata "distributed") against replicated: the same tables,
# bytes and open errors.
sts_test_program(par_read_dist par_read_dist.c)
sts_add_mpi_test(NAME par_read_dist NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_dist> TIMEOUT 180)

# read_mdist_test(NAME n NP np... COMMAND ...): a copy of a reader test run with
# STS_TEST_READER_METADATA=distributed (par_read_util.h adds the open hint).
function(read_mdist_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "NP;COMMAND" ${ARGN})
  sts_add_mpi_test(NAME ${T_NAME} NP ${T_NP} COMMAND ${T_COMMAND} TIMEOUT ${T_TIMEOUT})
  sts_test_nps(nps ${T_NP})
  foreach(np ${nps})
    set_tests_properties(${T_NAME}_np${np} PROPERTIES ENVIRONMENT
                         "${STS_TEST_ENV};STS_TEST_READER_METADATA=distributed")
  endforeach()
endfunction()
read_mdist_test(NAME par_read_mdist NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read> TIMEOUT 120)
read_mdist_test(NAME par_read_errors_mdist NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_errors>
                TIMEOUT 120)
read_mdist_test(NAME par_read_xchg_mdist NP 1 2 3 4 COMMAND $<TARGET_FILE:par_read_xchg>
                TIMEOUT 120)
read_mdist_test(NAME par_read_xchg_random_mdist NP 2 3
                COMMAND $<TARGET_FILE:par_read_xchg_random> 60 1 TIMEOUT 300)
# Past the int limits: a 2 GiB + 16 byte tensor (label long: it writes and reads 2 GiB).
sts_test_program(par_read_large par_read_large.c)
sts_add_mpi_test(NAME par_read_large NP 1 COMMAND $<TARGET_FILE:par_read_large> TIMEOUT 600
                 LABELS long)
# ~50 s: started first when there is no CTestCostData yet.
set_tests_properties(par_read_large_np1 PROPERTIES COST 50)

# --- `stshard reshard` and `stshard load` (need the tool, the writer and the
# HDF5 reference tensors of fixtures/fixtures.cmake: fixture save_h5, file fixtures.h5) ---
if(NOT TARGET stshard_cli OR NOT EXISTS ${STS_TESTS_DIR}/fixtures/gen_fixtures.c)
  return()
endif()
set(STS_READ_H5 ${STS_TEST_WORK}/fixtures.h5)
set(STS_CLI_DIR ${PROJECT_SOURCE_DIR}/src/cli)

# Source checkpoints: N rank files (N = 1..4) with the fixtures' own splits, and
# the consolidated forms (index.json + 2 files; one model.safetensors).  All four
# in every build: the fixed cases below read reshard_src_np2 and _np4.
sts_test_program(par_reshard_src par_reshard_src.c ${STS_CLI_DIR}/model.c ${STS_CLI_DIR}/common.c)
target_link_libraries(par_reshard_src PRIVATE hdf5::hdf5)
target_include_directories(par_reshard_src PRIVATE ${STS_CLI_DIR})
foreach(n 1 2 3 4)
  sts_add_mpi_test(NAME reshard_src NP ${n} TIMEOUT 120 FIXTURES_REQUIRED save_h5
                   COMMAND $<TARGET_FILE:par_reshard_src> ${STS_READ_H5}
                           ${STS_TEST_WORK}/reshard_src_np${n})
  set_tests_properties(reshard_src_np${n} PROPERTIES FIXTURES_SETUP reshard_src)
endforeach()
sts_add_mpi_test(NAME reshard_src_cons NP 1 TIMEOUT 120 FIXTURES_REQUIRED save_h5
                 COMMAND $<TARGET_FILE:par_reshard_src> ${STS_READ_H5}
                         ${STS_TEST_WORK}/reshard_src_cons --consolidated)
set_tests_properties(reshard_src_cons_np1 PROPERTIES FIXTURES_SETUP reshard_src)

sts_test_program(par_reshard_check par_reshard_check.c ${STS_CLI_DIR}/model.c
                 ${STS_CLI_DIR}/share.c ${STS_CLI_DIR}/common.c)
target_link_libraries(par_reshard_check PRIVATE hdf5::hdf5)
target_include_directories(par_reshard_check PRIVATE ${STS_CLI_DIR})

# reshard_test(name src m strategy dim)
function(reshard_test name src m strategy dim)
  add_test(NAME reshard_${name}
           COMMAND ${STS_TESTS_DIR}/read/par_reshard.sh ${src}
                   ${STS_TEST_WORK}/reshard_${name} ${m} ${strategy} ${dim} ${STS_READ_H5}
                   $<TARGET_FILE:par_reshard_check> $<TARGET_FILE:stshard_cli>
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(reshard_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}" FIXTURES_REQUIRED "save_h5;reshard_src")
endfunction()

# N -> M for every N, M in 1..4 (default: rows along dim 0), the other strategies on a
# few pairs, and the consolidated forms.
sts_test_nps(RESHARD_NPS 1 2 3 4)
foreach(n ${RESHARD_NPS})
  foreach(m ${RESHARD_NPS})
    reshard_test(n${n}_m${m} ${STS_TEST_WORK}/reshard_src_np${n} ${m} row 0)
  endforeach()
endforeach()
reshard_test(n3_m2_col ${STS_TEST_WORK}/reshard_src_np3 2 col 0)
reshard_test(n2_m4_col ${STS_TEST_WORK}/reshard_src_np2 4 col 0)
reshard_test(n4_m3_tp ${STS_TEST_WORK}/reshard_src_np4 3 tp 0)
reshard_test(n1_m4_mesh2d ${STS_TEST_WORK}/reshard_src_np1 4 mesh2d 0)
reshard_test(n3_m4_mesh2d ${STS_TEST_WORK}/reshard_src_np3 4 mesh2d 0)
reshard_test(n4_m2_dim1 ${STS_TEST_WORK}/reshard_src_np4 2 row 1)
reshard_test(n2_m3_dim2 ${STS_TEST_WORK}/reshard_src_np2 3 row 2)
foreach(m ${RESHARD_NPS})
  reshard_test(cons_m${m} ${STS_TEST_WORK}/reshard_src_cons/cons ${m} row 0)
  reshard_test(single_m${m} ${STS_TEST_WORK}/reshard_src_cons/single/model.safetensors ${m}
               row 0)
endforeach()
reshard_test(cons_m3_col ${STS_TEST_WORK}/reshard_src_cons/cons 3 col 0)
reshard_test(single_m2_mesh2d ${STS_TEST_WORK}/reshard_src_cons/single 4 mesh2d 0)

# stshard load --check-seed on `stshard save` output, and through a reshard.
function(load_test name nsave mload strategy)
  add_test(NAME load_${name}
           COMMAND ${STS_TESTS_DIR}/read/par_load.sh ${STS_TEST_WORK}/load_${name}
                   ${nsave} ${mload} ${strategy} $<TARGET_FILE:stshard_cli>
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(load_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()
load_test(s3_l2_row 3 2 row)
load_test(s2_l4_col 2 4 col)
load_test(s4_l3_tp 4 3 tp)
load_test(s1_l4_mesh2d 1 4 mesh2d)
load_test(s4_l1_row 4 1 row)

# Exit statuses and messages of the tool, the same on every rank.
set(READ_EXPECT ${STS_TESTS_DIR}/cli/expect.sh)
set(READ_MPI2 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
    $<TARGET_FILE:stshard_cli>)
function(read_status_test name status)
  add_test(NAME read_cli_${name} COMMAND ${READ_EXPECT} ${status} ${ARGN}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(read_cli_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 120
                       ENVIRONMENT "${STS_TEST_ENV}" FIXTURES_REQUIRED "save_h5;reshard_src")
endfunction()
read_status_test(load_help 0 -m "^Usage: mpirun -n M stshard load" -m "--check-seed" --
                 ${READ_MPI2} load --help)
read_status_test(reshard_help 0 -m "^Usage: mpirun -n M stshard reshard" --
                 ${READ_MPI2} reshard --help)
read_status_test(load_missing 3 -m "stshard load: NotFound: .*no/such/ckpt" --
                 ${READ_MPI2} load no/such/ckpt)
read_status_test(load_bad_strategy 2 -m "unknown strategy 'diag'" --
                 ${READ_MPI2} load reshard_src_np2 --strategy diag)
read_status_test(load_dim_col 2 -m "--dim applies to --strategy row only" --
                 ${READ_MPI2} load reshard_src_np2 --strategy col --dim 1)
read_status_test(load_bad_exchange 2 -m "--exchange is auto or off, not 'maybe'" --
                 ${READ_MPI2} load reshard_src_np2 --exchange maybe)
# Where the reader keeps block records (--metadata): checked values, the default, the one
# combination refused, and the same rank files from either mode.
read_status_test(load_bad_metadata 2 -m "--metadata is distributed or replicated, not 'local'" --
                 ${READ_MPI2} load reshard_src_np2 --metadata local)
read_status_test(load_metadata_default 0 -m "\"metadata\": \"distributed\"" --
                 ${READ_MPI2} load reshard_src_np3 --strategy col --json)
read_status_test(load_whole_replicated 0 -m "\"metadata\": \"replicated\"" --
                 ${READ_MPI2} load reshard_src_np3 --compare-whole --json)
read_status_test(load_whole_distributed 2 -m "--compare-whole needs --metadata replicated" --
                 ${READ_MPI2} load reshard_src_np2 --compare-whole --metadata distributed)
read_status_test(reshard_bad_metadata 2 -m "--metadata is distributed or replicated, not 'none'" --
                 ${READ_MPI2} reshard reshard_src_np2 read_meta_out --metadata none)
read_status_test(reshard_metadata_same 0 -m "^same$"
                 -- sh -c "rm -rf read_meta_r read_meta_d && \"$@\" --strategy col --metadata replicated read_meta_r && \"$@\" --strategy col read_meta_d && diff -r read_meta_r read_meta_d && echo same" sh
                 ${READ_MPI2} reshard reshard_src_np3)
# Cold-cache passes (CI runs as root, which the drop needs).
read_status_test(load_drop_caches 0 -m "\"drop_caches\": true" -m "\"exchange\": \"off\"" --
                 ${READ_MPI2} load reshard_src_np2 --strategy col --drop-caches --exchange off
                 --compare-whole --json)
read_status_test(reshard_same_dir 2 -m "OUTDIR must not be the input's directory" --
                 ${READ_MPI2} reshard reshard_src_np2 reshard_src_np2 --force)
read_status_test(reshard_args 2 -m "expected INDIR and OUTDIR" -- ${READ_MPI2} reshard x)
# A rank file missing from the input: the gap is named, nothing is written.
read_status_test(reshard_gap 1 -m "stshard reshard: CoverageGap: .*no block covers" -n "^reshard:"
                 -- sh -c "rm -rf read_gap read_gap_out && cp -r reshard_src_np3 read_gap && rm read_gap/shard-00002-* && exec \"$@\"" sh
                 ${READ_MPI2} reshard read_gap read_gap_out)
