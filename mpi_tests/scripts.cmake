# The scripts the docs tell a reader to run exist and are executable.
sts_add_unit_test(NAME doc_scripts
                  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/doc_scripts.sh ${PROJECT_SOURCE_DIR})
