# Header codec: unit tests, the bad/good corpus, the parse benchmark.
sts_test_program(unit_header unit_header.c)
sts_add_unit_test(NAME unit_header COMMAND $<TARGET_FILE:unit_header>)
