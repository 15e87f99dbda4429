# Sharded save: HDF5 reference tensors (setup fixture), the writer API at 1-4
# ranks, error cases, a block over 2 GiB, and `stshard save` for every strategy.

# The reference tensors, written once per test run.
add_executable(gen_fixtures gen_fixtures.c)
target_link_libraries(gen_fixtures PRIVATE hdf5::hdf5)
sts_target_warnings(gen_fixtures)
set(STS_FIXTURES_H5 ${STS_TEST_WORK}/fixtures.h5)
sts_add_unit_test(NAME save_gen_fixtures COMMAND $<TARGET_FILE:gen_fixtures> ${STS_FIXTURES_H5})
set_tests_properties(save_gen_fixtures PROPERTIES FIXTURES_SETUP save_h5)

sts_test_program(par_save par_save.c)
target_link_libraries(par_save PRIVATE hdf5::hdf5)
foreach(np 1 2 3 4)
  sts_add_mpi_test(NAME par_save NP ${np} TIMEOUT 120 FIXTURES_REQUIRED save_h5
                   COMMAND $<TARGET_FILE:par_save> ${STS_FIXTURES_H5} ${STS_TEST_WORK}/par_save_np${np})
endforeach()
