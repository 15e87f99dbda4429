# Saving straight into a Hugging Face checkpoint: the one-call save +
# consolidate, the direct mode, and the full-tensor save (docs/save.md,
# "Save modes").

# The API: full-tensor saves with arbitrary and duplicate owners, strided
# blocks of every rank, sub-byte dtypes, the one-call mode, and errors that
# must come out the same on every rank with no final-named file left.
sts_test_program(par_direct par_direct.c)
sts_add_mpi_test(NAME par_direct NP 1 2 3 4 TIMEOUT 300
                 COMMAND $<TARGET_FILE:par_direct> ${STS_TEST_WORK}/par_direct)

# Fault switch (test builds): one rank failing at any point of a direct or one-call save.
if(STS_FAULT_INJECTION)
  sts_test_program(par_direct_fault par_direct_fault.c)
  sts_add_mpi_test(NAME par_direct_fault NP 2 3 TIMEOUT 300
                   COMMAND $<TARGET_FILE:par_direct_fault> ${STS_TEST_WORK}/par_direct_fault)
endif()

# --- the tool: direct == two-step == consolidate of the kept rank files ------
if(NOT TARGET stshard_cli)
  return()
endif()

# direct_equal_test(name np model strategy dtype [save options...])
function(direct_equal_test name np model strategy dtype)
  add_test(NAME direct_equal_${name}_np${np}
           COMMAND ${STS_TESTS_DIR}/direct/equal.sh $<TARGET_FILE:stshard_cli>
                   ${STS_TEST_WORK}/direct_equal_${name}_np${np} ${np} ${model} ${strategy}
                   ${dtype} ${ARGN} -- ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(direct_equal_${name}_np${np} PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()

sts_test_nps(DIRECT_NPS 1 2 3 4)
foreach(np ${DIRECT_NPS})
  foreach(strategy tp row col mesh2d)
    direct_equal_test(llama_${strategy} ${np} llama:4MiB ${strategy} BF16)
  endforeach()
  # Every dtype width of the mixed model, 3-D and 4-D tensors, scalars.
  direct_equal_test(mixed_mesh2d_pytorch ${np} mixed:3MiB mesh2d F32 --layout pytorch)
  direct_equal_test(mixed_col_split ${np} mixed:3MiB col F8_E4M3 --max-file-size 300KiB
                    --align 4096)
  direct_equal_test(reference_tp ${np} llama:2MiB tp F16 --reference-split 500KB)
  # A mapping of four tensors (two column-split under tp), the rest dropped.
  direct_equal_test(drop_unmapped ${np} llama:4MiB tp BF16 --mapping
                    ${STS_TESTS_DIR}/direct/partial_mapping.json --drop-unmapped)
endforeach()

# Usage errors of the new options (exit 2 on every rank, message on rank 0).
set(DIRECT_SAVE ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
    $<TARGET_FILE:stshard_cli> save)
function(direct_status_test name status)
  add_test(NAME direct_cli_${name} COMMAND ${STS_TESTS_DIR}/cli/expect.sh ${status}
                                           ${ARGN}
           WORKING_DIRECTORY ${STS_TEST_WORK})
  set_tests_properties(direct_cli_${name} PROPERTIES LABELS "mpi;cli" TIMEOUT 120
                       ENVIRONMENT "${STS_TEST_ENV}")
endfunction()
direct_status_test(help 0 -m "--consolidate FINALDIR" -m "--direct" -m "--keep-shards" --
                   ${DIRECT_SAVE} --help)
direct_status_test(both 2 -m "--direct and --consolidate exclude each other" --
                   ${DIRECT_SAVE} x --model llama:1MiB --direct --consolidate y)
direct_status_test(keep_alone 2 -m "--keep-shards needs --consolidate" --
                   ${DIRECT_SAVE} x --model llama:1MiB --keep-shards)
direct_status_test(opts_alone 2 -m "output options need --consolidate or --direct" --
                   ${DIRECT_SAVE} x --model llama:1MiB --layout pytorch)
direct_status_test(bad_align 2 -m "multiple of 8" --
                   ${DIRECT_SAVE} x --model llama:1MiB --direct --align 12)
direct_status_test(same_dir 2 -m "Usage" -m "is the input directory" -m "rank files are kept" --
                   ${DIRECT_SAVE} direct_cli_same --model llama:1MiB --consolidate direct_cli_same
                   --force)

# A rank killed in the middle of a direct save: the job ends, nothing is published.
if(STS_FAULT_INJECTION)
  foreach(rank 0 1)
    add_test(NAME direct_kill_rank${rank}
             COMMAND ${STS_TESTS_DIR}/direct/kill.sh $<TARGET_FILE:stshard_cli>
                     ${STS_TEST_WORK}/direct_kill_rank${rank} ${rank} -- ${MPIEXEC_EXECUTABLE}
                     ${MPIEXEC_PREFLAGS}
             WORKING_DIRECTORY ${STS_TEST_WORK})
    set_tests_properties(direct_kill_rank${rank} PROPERTIES LABELS "mpi;cli;rel" TIMEOUT 120
                         ENVIRONMENT "${STS_TEST_ENV}")
  endforeach()
endif()

# The environment switches (STSHARD_DIRECT_STRIDED, STSHARD_DIRECT_ROUND, STSHARD_COPY_RANGE)
# set on one rank only: rank 0's value governs every rank, outputs are byte-identical, no hang.
set(STS_ENV_AGREE_FAULT 0)
if(STS_FAULT_INJECTION)
  set(STS_ENV_AGREE_FAULT 1)
endif()
add_test(NAME env_agree
         COMMAND ${STS_TESTS_DIR}/direct/par_env_agree.sh ${STS_TEST_WORK}/env_agree
                 $<TARGET_FILE:stshard_cli> ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                 ${MPIEXEC_PREFLAGS}
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(env_agree PROPERTIES LABELS "mpi;cli" TIMEOUT 300
                     ENVIRONMENT "${STS_TEST_ENV};STS_FAULT_BUILD=${STS_ENV_AGREE_FAULT}")
