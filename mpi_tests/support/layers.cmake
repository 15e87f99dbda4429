# The library's layers (src/layer.h): an upward include fails to compile, and
# the format and plan layers call no MPI.
sts_add_unit_test(NAME layers COMMAND ${CMAKE_COMMAND}
  -DCC=${CMAKE_C_COMPILER} -DSRC=${PROJECT_SOURCE_DIR}/src -DNM=${CMAKE_NM}
  "-DINC=${PROJECT_SOURCE_DIR}/include|$<JOIN:$<TARGET_PROPERTY:MPI::MPI_C,INTERFACE_INCLUDE_DIRECTORIES>,|>|$<JOIN:$<TARGET_PROPERTY:cjson,INTERFACE_INCLUDE_DIRECTORIES>,|>"
  "-DLOW_OBJECTS=$<JOIN:$<TARGET_OBJECTS:sts_format>,|>|$<JOIN:$<TARGET_OBJECTS:sts_plan>,|>"
  -DWORK=${CMAKE_CURRENT_BINARY_DIR}/layers_work
  -P ${CMAKE_CURRENT_LIST_DIR}/layers/check_layers.cmake)
# Each source file's name is the prefix of the functions it defines.
sts_add_unit_test(NAME names COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM}
  "-DOBJECTS=$<JOIN:$<TARGET_OBJECTS:sts_format>,|>|$<JOIN:$<TARGET_OBJECTS:sts_plan>,|>|$<JOIN:$<TARGET_OBJECTS:sts_io>,|>|$<JOIN:$<TARGET_OBJECTS:sts_ops>,|>"
  -P ${CMAKE_CURRENT_LIST_DIR}/layers/check_names.cmake)
