# Reliability suite (docs/reliability.md): the bad-input sweep over verify,
# consolidate and reshard, fault injection, crash safety, stress and
# determinism, and valgrind runs.  Scripts and generators live in
# mpi_tests/reliability/.
set(REL_DIR ${STS_TESTS_DIR}/reliability)
set(REL_WORK ${STS_TEST_WORK}/rel)
file(MAKE_DIRECTORY ${REL_WORK})

find_program(REL_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT REL_PYTHON)
  find_program(REL_PYTHON NAMES python3)
endif()

if(NOT TARGET stshard_cli)
  return()
endif()
set(REL_CLI $<TARGET_FILE:stshard_cli>)

sts_test_program(gen_many gen_many.c)

# rel_test(name [MPI] COMMAND ... [LABELS ..] [TIMEOUT s] [FIXTURES fixture...]):
# MPI when the command starts MPI programs (mpiexec, or the tool's MPI
# subcommands): label mpi instead of unit.
function(rel_test name)
  cmake_parse_arguments(T "MPI" "TIMEOUT" "COMMAND;LABELS;FIXTURES" ${ARGN})
  if(T_MPI)
    sts_add_script_test(NAME ${name} COMMAND ${T_COMMAND} LABELS "rel;${T_LABELS}"
                        TIMEOUT ${T_TIMEOUT})
  else()
    sts_add_unit_test(NAME ${name} COMMAND ${T_COMMAND} LABELS "rel;${T_LABELS}"
                      TIMEOUT ${T_TIMEOUT})
  endif()
  if(T_FIXTURES)
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
endfunction()

# --- bad-input sweep ------------------------------------------------------------
# >= 50 malformed checkpoints (format and sharding semantics), generated into
# the build tree; every tool must reject each with the right error name, exit
# 1 on every rank, never hang, and leave nothing in the output directory.
set(REL_SWEEP ${REL_WORK}/sweep)
if(REL_PYTHON)
  sts_add_unit_test(NAME rel_sweep_gen LABELS rel COMMAND ${REL_PYTHON}
                    ${REL_DIR}/make_bad_inputs.py --out ${REL_SWEEP} --corpus ${STS_CORPUS_DIR}/bad)
  set_tests_properties(rel_sweep_gen PROPERTIES FIXTURES_SETUP rel_sweep)
else()
  # The sweep must not silently disappear.
  sts_add_unit_test(NAME rel_sweep_gen LABELS rel COMMAND sh -c
                    "echo 'python3 (standard library) is needed to generate the sweep'; exit 1")
endif()
set(REL_SWEEP_ARGS --cases ${REL_SWEEP} --stshard ${REL_CLI})
rel_test(rel_sweep_verify FIXTURES rel_sweep COMMAND ${REL_DIR}/sweep.sh --tool verify
         ${REL_SWEEP_ARGS} --work ${REL_WORK}/sweep-verify)

# The MPI tools, 2 ranks, the cases spread over three tests so ctest -j runs them side by side.
# Every case costs a launch (MPI_Init is slow under ASan): the sanitizer build runs one
# sixth of each tool's cases through the tool (every sixth case of the manifest), and all
# of them through the library in one job (par_sweep below).
set(REL_SWEEP_PARTS 1/3 2/3 3/3)
if(STS_SANITIZE)
  set(REL_SWEEP_PARTS 1/6)
endif()
foreach(tool consolidate reshard)
  if(NOT EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_${tool}.c)
    continue()
  endif()
  foreach(part ${REL_SWEEP_PARTS})
    string(REGEX REPLACE "/.*" "" i ${part})
    rel_test(rel_sweep_${tool}_${i} MPI FIXTURES rel_sweep TIMEOUT 900
             COMMAND ${REL_DIR}/sweep.sh --tool ${tool} ${REL_SWEEP_ARGS}
             --work ${REL_WORK}/sweep-${tool} --part ${part} --np 2 --launcher-every 20
             --mpiexec ${MPIEXEC_EXECUTABLE} -- ${MPIEXEC_PREFLAGS})
    # ~30 s each: started first when there is no CTestCostData yet.
    set_tests_properties(rel_sweep_${tool}_${i} PROPERTIES COST 30)
  endforeach()
endforeach()

# The whole sweep through the library (sts_consolidate, sts_reader_open) in one MPI job.
if(EXISTS ${PROJECT_SOURCE_DIR}/src/consolidate.c AND EXISTS ${PROJECT_SOURCE_DIR}/src/reader.c)
  sts_test_program(par_sweep par_sweep.c)
  sts_add_unit_test(NAME rel_par_sweep_clean LABELS rel COMMAND ${CMAKE_COMMAND} -E
                    rm -rf ${REL_WORK}/par_sweep)
  set_tests_properties(rel_par_sweep_clean PROPERTIES FIXTURES_SETUP rel_par_sweep)
  sts_add_mpi_test(NAME rel_par_sweep NP 2 3 LABELS rel TIMEOUT 600
                   FIXTURES_REQUIRED "rel_sweep;rel_par_sweep"
                   COMMAND $<TARGET_FILE:par_sweep> ${REL_SWEEP} ${REL_WORK}/par_sweep)
endif()

# --- fault injection (test builds: -DSTS_FAULT_INJECTION=ON) ----------------------
if(STS_FAULT_INJECTION)
  sts_test_program(par_fault par_fault.c)
  sts_test_nps(REL_FAULT_NPS 2 4)
  foreach(np ${REL_FAULT_NPS})
    file(MAKE_DIRECTORY ${REL_WORK}/fault_np${np})
    sts_add_mpi_test(NAME rel_par_fault NP ${np} LABELS rel TIMEOUT 120
                     COMMAND $<TARGET_FILE:par_fault> ${REL_WORK}/fault_np${np})
  endforeach()
endif()

# --- valgrind (label "valgrind"; not in sanitizer builds, which valgrind cannot run) ---
# Representative commands, serial and at 2 ranks, each must exit with the
# expected status and valgrind must find no invalid access, no uninitialised
# value and no definite leak; valgrind-openmpi.supp hides Open MPI's own.
find_program(REL_VALGRIND valgrind)
if(REL_VALGRIND AND NOT STS_SANITIZE)
  add_library(rel_vg_keepdl SHARED ${STS_TESTS_SUPPORT}/asan_keepdl.c)
  set(REL_VG ${REL_DIR}/vg.sh ${STS_TESTS_SUPPORT}/valgrind-openmpi.supp
             $<TARGET_FILE:rel_vg_keepdl>)
  set(REL_MPI2 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS})
  # rel_vg_test(name fixture status command...)
  function(rel_vg_test name fixture status)
    rel_test(${name} LABELS valgrind TIMEOUT 600 FIXTURES ${fixture}
             COMMAND ${REL_VG} ${status} ${ARGN})
  endfunction()
  function(rel_vg_mpi_test name fixture status)
    rel_test(${name} MPI LABELS valgrind TIMEOUT 600 FIXTURES ${fixture}
             COMMAND ${REL_MPI2} ${REL_VG} ${status} ${ARGN})
  endfunction()
  rel_vg_test(rel_vg_verify_good rel_sweep 0 ${REL_CLI} verify ${REL_SWEEP}/good_ranks)
  rel_vg_test(rel_vg_verify_gap rel_sweep 1 ${REL_CLI} verify ${REL_SWEEP}/sem_gap_rows)
  rel_vg_test(rel_vg_verify_index rel_sweep 1 ${REL_CLI} verify ${REL_SWEEP}/ix_tensor_in_wrong_file)
  rel_vg_test(rel_vg_inspect rel_sweep 0 ${REL_CLI} inspect --json ${REL_SWEEP}/good_index)
  rel_vg_mpi_test(rel_vg_save rel_sweep 0 ${REL_CLI} save ${REL_WORK}/vg_save
                  --model llama:1MiB --strategy mesh2d --force)
  if(EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_consolidate.c)
    rel_vg_mpi_test(rel_vg_consolidate rel_sweep 0 ${REL_CLI} consolidate ${REL_SWEEP}/good_ranks
                    ${REL_WORK}/vg_cons --force --max-file-size 100B --buffer-size 64KiB)
    rel_vg_mpi_test(rel_vg_consolidate_gap rel_sweep 1 ${REL_CLI} consolidate
                    ${REL_SWEEP}/sem_gap_cols ${REL_WORK}/vg_cons_gap)
    rel_vg_mpi_test(rel_vg_consolidate_header rel_sweep 1 ${REL_CLI} consolidate
                    ${REL_SWEEP}/fmt_unterminated__InvalidHeaderDeserialization ${REL_WORK}/vg_cons_hdr)
  endif()
  if(EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_reshard.c)
    rel_vg_mpi_test(rel_vg_reshard rel_sweep 0 ${REL_CLI} reshard ${REL_SWEEP}/good_ranks_duplicate_replica
                    ${REL_WORK}/vg_reshard --force)
    rel_vg_mpi_test(rel_vg_reshard_index rel_sweep 1 ${REL_CLI} reshard
                    ${REL_SWEEP}/ix_tensor_in_wrong_file ${REL_WORK}/vg_reshard_ix)
  endif()
  if(STS_FAULT_INJECTION)
    rel_vg_mpi_test(rel_vg_par_fault rel_sweep 0 $<TARGET_FILE:par_fault> ${REL_WORK}/fault_vg)
    file(MAKE_DIRECTORY ${REL_WORK}/fault_vg)
  endif()
endif()

# --- fault and safety scenarios (faults.sh; docs/reliability.md) ------------------
# Exit 77 = skipped (no root for tmpfs mounts, no setpriv).  Each scenario works
# in its own directory (faults/<scenario>) and waits for marker files, not for
# a time, so they run beside other tests; the kill scenarios stay RUN_SERIAL,
# since they SIGKILL real processes mid-write and check that none is left.
set(REL_FAULTS ${REL_DIR}/faults.sh)
function(rel_fault_test scenario)
  rel_test(rel_fault_${scenario} MPI TIMEOUT 300
           COMMAND ${REL_FAULTS} ${scenario} --stshard ${REL_CLI} --gen $<TARGET_FILE:gen_many>
           --work ${REL_WORK}/faults --np 2 --mpiexec ${MPIEXEC_EXECUTABLE} -- ${MPIEXEC_PREFLAGS})
  set_tests_properties(rel_fault_${scenario} PROPERTIES SKIP_RETURN_CODE 77)
  if(scenario MATCHES "^kill_")
    set_tests_properties(rel_fault_${scenario} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()
rel_fault_test(save_full_disk)
if(EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_consolidate.c)
  foreach(sc missing_indir unreadable fifo_input dir_input full_disk readonly exists_no_force
             same_dir)
    rel_fault_test(${sc})
  endforeach()
  if(EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_reshard.c)
    rel_fault_test(reshard_fifo_input)
    rel_fault_test(reshard_dir_input)
  endif()
  # These drive the run through the fault switch (kills, pauses, one-rank failures).
  if(STS_FAULT_INJECTION)
    foreach(sc kill_switch_rank0 kill_switch_rank1 kill_external vanished_input shrunk_input
               grown_input one_rank_fails force_publish_fails)
      rel_fault_test(${sc})
    endforeach()
    # Library level: a failure at every phase, on the first or the last rank, comes back
    # identical on every rank and leaves nothing behind.
    sts_test_program(par_fault_consolidate par_fault_consolidate.c)
    sts_add_unit_test(NAME rel_fault_cons_input LABELS rel COMMAND sh -c
      "rm -rf '${REL_WORK}/fault_cons' && mkdir -p '${REL_WORK}/fault_cons' && $<TARGET_FILE:gen_many> --write '${REL_WORK}/fault_cons/in' --ranks 5 --tensors 3000")
    set_tests_properties(rel_fault_cons_input PROPERTIES FIXTURES_SETUP rel_fault_cons)
    sts_add_mpi_test(NAME rel_par_fault_consolidate NP 3 LABELS rel TIMEOUT 300
                     FIXTURES_REQUIRED rel_fault_cons
                     COMMAND $<TARGET_FILE:par_fault_consolidate> ${REL_WORK}/fault_cons/in
                             ${REL_WORK}/fault_cons)
  endif()
endif()

# --- stress, determinism, memory (label "long": main build only) -----------------
if(EXISTS ${PROJECT_SOURCE_DIR}/src/cli/cmd_consolidate.c)
  foreach(sc many_tensors many_ranks determinism memory)
    rel_test(rel_stress_${sc} MPI LABELS long TIMEOUT 1800
             COMMAND ${REL_DIR}/stress.sh ${sc} --stshard ${REL_CLI} --gen $<TARGET_FILE:gen_many>
             --work ${REL_WORK}/stress --mpiexec ${MPIEXEC_EXECUTABLE} -- ${MPIEXEC_PREFLAGS})
    # They share the work directory rel/stress (a lock, not the whole machine);
    # memory measures peak RSS, so it runs alone.
    if(sc STREQUAL "memory")
      set_tests_properties(rel_stress_${sc} PROPERTIES RUN_SERIAL TRUE)
    else()
      set_tests_properties(rel_stress_${sc} PROPERTIES RESOURCE_LOCK rel_stress)
    endif()
  endforeach()
endif()
