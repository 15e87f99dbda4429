# The scripts the docs tell a reader to run exist and are executable.
sts_add_unit_test(NAME doc_scripts
                  COMMAND ${STS_TESTS_DIR}/support/doc_scripts.sh ${PROJECT_SOURCE_DIR})
