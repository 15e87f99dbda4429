# The stshard tool's local subcommands (inspect, verify, mapping), which run
# without MPI (label unit; the mapping module's and the coverage check's unit
# tests are in unit/unit.cmake, gen_checkpoint in fixtures/fixtures.cmake).
# Checkpoints, good and broken on
# purpose, are generated in the build tree by fixture tests; each CLI test
# asserts the exit status AND the error names in the output
# (mpi_tests/cli/expect.sh).

if(NOT TARGET stshard_cli)
  return()
endif()

set(CLI_DATA ${STS_TEST_WORK}/cli)
set(CLI_EXPECT ${STS_TESTS_DIR}/cli/expect.sh)
set(CLI_FRESH ${STS_TESTS_DIR}/cli/fresh.sh)
set(CLI $<TARGET_FILE:stshard_cli>)
set(GEN $<TARGET_FILE:gen_checkpoint>)

# cli_fixture(name dir gen-args...): generates DIR afresh, as part of fixture cli_data.
function(cli_fixture name dir)
  sts_add_unit_test(NAME cli_gen_${name} COMMAND ${CLI_FRESH} ${dir} ${GEN} ${ARGN} LABELS cli)
  set_tests_properties(cli_gen_${name} PROPERTIES FIXTURES_SETUP cli_data)
endfunction()

# cli_test(name status [-m re]... [-n re]... [-f re file]... -- command...)
# Keep [ ] balanced inside each regex: CMake does not split a list at a ';'
# inside brackets.
function(cli_test name status)
  sts_add_unit_test(NAME cli_${name} COMMAND ${CLI_EXPECT} ${status} ${ARGN} LABELS cli)
  set_tests_properties(cli_${name} PROPERTIES FIXTURES_REQUIRED cli_data)
endfunction()

# --- fixtures ----------------------------------------------------------------
cli_fixture(single ${CLI_DATA}/single ${CLI_DATA}/single/model.safetensors)
cli_fixture(single_bad ${CLI_DATA}/single-bad ${CLI_DATA}/single-bad/model.safetensors
            --defect wrong-length)
cli_fixture(index ${CLI_DATA}/index --index ${CLI_DATA}/index)
foreach(d index-missing index-extra index-file total-size wrong-length)
  cli_fixture(index_${d} ${CLI_DATA}/index-${d} --index ${CLI_DATA}/index-${d} --defect ${d})
endforeach()
cli_fixture(ranks ${CLI_DATA}/ranks --ranks ${CLI_DATA}/ranks 4)
cli_fixture(ranks_files2 ${CLI_DATA}/ranks-files2 --ranks ${CLI_DATA}/ranks-files2 3 --files 2)
foreach(d gap overlap dtype missing-sharding bad-sharding wrong-length replica)
  cli_fixture(ranks_${d} ${CLI_DATA}/ranks-${d} --ranks ${CLI_DATA}/ranks-${d} 3 --defect ${d})
endforeach()
sts_add_unit_test(NAME cli_gen_empty COMMAND ${CLI_FRESH} ${CLI_DATA}/empty
                  ${CMAKE_COMMAND} -E make_directory ${CLI_DATA}/empty LABELS cli)
set_tests_properties(cli_gen_empty PROPERTIES FIXTURES_SETUP cli_data)

# --- help and usage ----------------------------------------------------------
foreach(cmd inspect verify mapping)
  cli_test(${cmd}_help 0 -m "^Usage: stshard ${cmd}" -- ${CLI} ${cmd} --help)
endforeach()
cli_test(help 0 -m "inspect" -m "verify" -m "mapping" -- ${CLI} --help)
cli_test(unknown_command 2 -m "unknown command" -- ${CLI} frobnicate)
cli_test(verify_no_path 2 -m "missing PATH" -- ${CLI} verify)
cli_test(verify_bad_option 2 -m "unknown option '--bogus'" -- ${CLI} verify --bogus x)
cli_test(verify_json_quiet 2 -m "exclude" -- ${CLI} verify --json --quiet ${CLI_DATA}/index)
cli_test(inspect_no_path 2 -m "missing PATH" -- ${CLI} inspect)
cli_test(mapping_no_reference 2 -m "--reference" -- ${CLI} mapping)

# --- verify: valid checkpoints -----------------------------------------------
set(single ${CLI_DATA}/single/model.safetensors)
cli_test(verify_file 0 -m "model.safetensors: valid$" -- ${CLI} verify ${single})
cli_test(verify_single_dir 0 -m "single: valid$" -- ${CLI} verify ${CLI_DATA}/single)
cli_test(verify_index 0 -m "index: valid$" -- ${CLI} verify ${CLI_DATA}/index)
cli_test(verify_ranks 0 -m "ranks: valid$" -- ${CLI} verify ${CLI_DATA}/ranks)
cli_test(verify_ranks_files2 0 -m "valid$" -- ${CLI} verify ${CLI_DATA}/ranks-files2)
cli_test(verify_ranks_replica 0 -m "valid$" -- ${CLI} verify ${CLI_DATA}/ranks-replica)
cli_test(verify_rank_file 0 -m "valid$" --
         ${CLI} verify ${CLI_DATA}/ranks/shard-00002-model-00001-of-00001.safetensors)
cli_test(verify_json_valid 0 -m "\"valid\": true" -m "\"problems\": \\[\\]" --
         ${CLI} verify --json ${CLI_DATA}/ranks)
cli_test(verify_quiet_valid 0 -n "." -- ${CLI} verify --quiet ${CLI_DATA}/ranks)

# --- verify: broken checkpoints (exit 1, the right error names) ---------------
cli_test(verify_file_length 1 -m "model.safetensors: MetadataIncompleteBuffer: "
         -m "INVALID: 1 problem$" -- ${CLI} verify ${CLI_DATA}/single-bad/model.safetensors)
cli_test(verify_index_missing 1
         -m "model-00001-of-00002.safetensors: InvalidIndex: .*\"model.ghost.weight\""
         -- ${CLI} verify ${CLI_DATA}/index-index-missing)
cli_test(verify_index_extra 1
         -m "InvalidIndex: tensor \"model.layers.0.attn.q_proj.weight\" is not in the index"
         -- ${CLI} verify ${CLI_DATA}/index-index-extra)
cli_test(verify_index_file 1
         -m "index.json: InvalidIndex: .*model-00003-of-00002.safetensors.*does not exist"
         -m "InvalidIndex: tensor \"model.norm.weight\" is in this file but weight_map maps it"
         -- ${CLI} verify ${CLI_DATA}/index-index-file)
cli_test(verify_index_total 1 -m "InvalidIndex: metadata.total_size is [0-9]+ but"
         -m "INVALID: 1 problem$" -- ${CLI} verify ${CLI_DATA}/index-total-size)
cli_test(verify_index_length 1
         -m "model-00002-of-00002.safetensors: MetadataIncompleteBuffer"
         -- ${CLI} verify ${CLI_DATA}/index-wrong-length)
cli_test(verify_gap 1
         -m "CoverageGap: tensor \"model.embed.weight\" \\(global shape \\[6, 8\\]\\): no block covers \\[1:2, 0:8\\]"
         -m "INVALID: 1 problem$" -- ${CLI} verify ${CLI_DATA}/ranks-gap)
cli_test(verify_overlap 1
         -m "shard-00001-model-00001-of-00001.safetensors: CoverageOverlap: tensor \"model.embed.weight\": block \\[0:2, 0:8\\] overlaps block \\[1:4, 0:8\\] of shard-00002-model-00001-of-00001.safetensors in \\[1:2, 0:8\\]"
         -n "CoverageGap" -- ${CLI} verify ${CLI_DATA}/ranks-overlap)
cli_test(verify_dtype 1
         -m "shard-00003-model-00001-of-00001.safetensors: DtypeMismatch: tensor \"layers.0.mlp.weight\" is F16 here but F32"
         -- ${CLI} verify ${CLI_DATA}/ranks-dtype)
cli_test(verify_missing_sharding 1
         -m "shard-00001-model-00001-of-00001.safetensors: InvalidShardingInfo"
         -n "InvalidShardingInfo: InvalidShardingInfo" -n "Coverage"
         -- ${CLI} verify ${CLI_DATA}/ranks-missing-sharding)
cli_test(verify_bad_sharding 1
         -m "shard-00001-model-00001-of-00001.safetensors: InvalidShardingInfo"
         -- ${CLI} verify ${CLI_DATA}/ranks-bad-sharding)
cli_test(verify_rank_length 1
         -m "shard-00003-model-00001-of-00001.safetensors: MetadataIncompleteBuffer"
         -n "Coverage" -- ${CLI} verify ${CLI_DATA}/ranks-wrong-length)
cli_test(verify_rank_file_no_sharding 1 -m "InvalidShardingInfo" --
         ${CLI} verify ${CLI_DATA}/ranks-missing-sharding/shard-00001-model-00001-of-00001.safetensors)
# Entries loaders would trip over or never read: a FIFO and a directory named like
# safetensors files, and a model file the index does not name.
# (Exit 3: the reader cannot read them, as for any other I/O error.)
cli_test(verify_rank_fifo 3
         -m "shard-00005-model-00001-of-00001.safetensors: IoError: is a FIFO, not a regular file"
         -m "could not be verified: 1 problem$" -- sh -c
         "rm -rf \"$1\" && cp -r \"$2\" \"$1\" && mkfifo \"$1/shard-00005-model-00001-of-00001.safetensors\" && exec \"$3\" verify \"$1\""
         sh ${CLI_DATA}/ranks-fifo ${CLI_DATA}/ranks ${CLI})
cli_test(verify_dir_named 3 -m "extra.safetensors: IoError: is a directory, not a regular file"
         -- sh -c "rm -rf \"$1\" && cp -r \"$2\" \"$1\" && mkdir \"$1/extra.safetensors\" && exec \"$3\" verify \"$1\""
         sh ${CLI_DATA}/single-dirnamed ${CLI_DATA}/single ${CLI})
cli_test(verify_index_unnamed 1
         -m "model-00003-of-00003.safetensors: InvalidIndex: model.safetensors.index.json does not name this file"
         -m "INVALID: 1 problem$" -- sh -c
         "rm -rf \"$1\" && cp -r \"$2\" \"$1\" && cp \"$1/model-00001-of-00002.safetensors\" \"$1/model-00003-of-00003.safetensors\" && exec \"$3\" verify \"$1\""
         sh ${CLI_DATA}/index-unnamed ${CLI_DATA}/index ${CLI})
cli_test(verify_json_gap 1 -m "\"valid\": false" -m "\"error\": \"CoverageGap\""
         -m "\"file\": \"${CLI_DATA}/ranks-gap\"" -- ${CLI} verify --json ${CLI_DATA}/ranks-gap)
cli_test(verify_quiet_gap 1 -n "." -- ${CLI} verify --quiet ${CLI_DATA}/ranks-gap)
cli_test(verify_empty_dir 1 -m "NoInput" -- ${CLI} verify ${CLI_DATA}/empty)
cli_test(verify_missing_path 3 -m "no-such-thing: NotFound" -m "could not be verified"
         -- ${CLI} verify ${CLI_DATA}/no-such-thing)

# --- inspect -------------------------------------------------------------------
cli_test(inspect_file 0
         -m "model.embed_tokens.weight +BF16 +\\[16, 8\\] +[0-9]+\\.\\.[0-9]+ +[0-9]+\\.\\.[0-9]+ +256 B"
         -m "lm_head.step +I64 +\\[\\] " -m "format +pt"
         -m "total: 1 file, 7 tensors" -- ${CLI} inspect ${single})
cli_test(inspect_ranks 0 -m "SAVED_OFFSETS"
         -m "model.embed.weight +BF16 +\\[2, 8\\] +\\[6, 0\\]"
         -m "layers.0.conv.weight +F32 +\\[2, 3, 2\\] +\\[0, 0, 4\\]"
         -m "DCP_SHARDING_INFO +\\(decoded" -m "total: 4 files, 14 tensors"
         -- ${CLI} inspect ${CLI_DATA}/ranks)
cli_test(inspect_index 0 -m "total_size [0-9]+ bytes, 7 tensors in weight_map"
         -m "total: 2 files, 7 tensors" -- ${CLI} inspect ${CLI_DATA}/index)
cli_test(inspect_json 0 -m "\"data_offsets\": .0, [0-9]+., \"file_offsets\": .[0-9]+, [0-9]+."
         -m "\"saved_offsets\": \\[0, 3\\]" -m "\"totals\": \\{\"files\": 1, \"tensors\": 3,"
         -- ${CLI} inspect --json ${CLI_DATA}/ranks/shard-00002-model-00001-of-00001.safetensors)
cli_test(inspect_bad 1 -m "stshard inspect: MetadataIncompleteBuffer: .*single-bad/model.safetensors"
         -n "MetadataIncompleteBuffer: .*MetadataIncompleteBuffer" -m "total: 1 file, 0 tensors"
         -- ${CLI} inspect ${CLI_DATA}/single-bad)
cli_test(inspect_missing 3 -m "NotFound" -- ${CLI} inspect ${CLI_DATA}/no-such-thing)
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  # The --json outputs must be JSON a standard parser accepts.
  set(JSON_OK ${STS_TESTS_DIR}/cli/json_ok.sh ${Python3_EXECUTABLE})
  cli_test(inspect_json_parses 0 -m "\"totals\"" -n "not valid JSON" --
           ${JSON_OK} ${CLI} inspect --json ${CLI_DATA}/ranks-files2)
  cli_test(inspect_json_bad_parses 1 -m "\"error\": \"MetadataIncompleteBuffer\"" -n "not valid JSON" --
           ${JSON_OK} ${CLI} inspect --json ${CLI_DATA}/index-wrong-length)
  cli_test(verify_json_parses 1 -m "\"CoverageOverlap\"" -n "not valid JSON" --
           ${JSON_OK} ${CLI} verify --json ${CLI_DATA}/ranks-overlap)
  cli_test(verify_json_valid_parses 0 -m "\"valid\": true" -n "not valid JSON" --
           ${JSON_OK} ${CLI} verify --json ${CLI_DATA}/index)
endif()

# --- mapping -------------------------------------------------------------------
cli_test(mapping_index 0 -m "^\\{$" -m "^  \"model.mask\": 2,$" -m "^  \"lm_head.step\": 1,$"
         -m "^  \"model.quant.scales\": 2$" -- ${CLI} mapping --reference ${CLI_DATA}/index)
cli_test(mapping_single 0 -m "\"model.mask\": 1" -n ": 2" --
         ${CLI} mapping --reference ${CLI_DATA}/single)
cli_test(mapping_output 0 -n "." -f "\"model.norm.weight\": 2" ${CLI_DATA}/mapping-out.json --
         ${CLI} mapping --reference=${CLI_DATA}/index -o ${CLI_DATA}/mapping-out.json)
cli_test(mapping_bad_single 1 -m "^stshard mapping: MetadataIncompleteBuffer: .*single-bad/model.safetensors: [a-z]"
         -n "MetadataIncompleteBuffer: .*MetadataIncompleteBuffer" --
         ${CLI} mapping --reference ${CLI_DATA}/single-bad)
cli_test(mapping_none 3 -m "NotFound: .*neither model.safetensors.index.json nor" --
         ${CLI} mapping --reference ${CLI_DATA}/ranks)
cli_test(mapping_missing 3 -m "NotFound" -- ${CLI} mapping --reference ${CLI_DATA}/no-such-dir)

# --- what a checkpoint directory holds: one answer from every command --------
# A Hugging Face checkpoint beside rank files is AmbiguousInput for load, reshard,
# consolidate, verify, mapping --reference and inspect; hidden junk is ignored by all.
add_test(NAME cli_dir_forms
         COMMAND ${STS_TESTS_DIR}/cli/dir_forms.sh ${CLI_DATA}/dir-forms
                 ${CLI_DATA}/ranks ${CLI_DATA}/single ${CLI_DATA}/index ${CLI}
                 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_PREFLAGS}
         WORKING_DIRECTORY ${STS_TEST_WORK})
set_tests_properties(cli_dir_forms PROPERTIES LABELS "mpi;cli" TIMEOUT 600
                     ENVIRONMENT "${STS_TEST_ENV}" FIXTURES_REQUIRED cli_data)
