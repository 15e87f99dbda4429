# Header codec: the bad/good corpus (mpi_tests/corpus/), the parse benchmark
# (unit_header is in unit/unit.cmake).

# Every corpus file must give the error its name announces (or be accepted).
sts_test_program(corpus_check corpus_check.c)
sts_add_unit_test(NAME corpus_bad COMMAND $<TARGET_FILE:corpus_check> --bad ${STS_CORPUS_DIR}/bad)
sts_add_unit_test(NAME corpus_good COMMAND $<TARGET_FILE:corpus_check> --good ${STS_CORPUS_DIR}/good)
# The 100,000,000-byte header is written at test time, not committed.
set(STS_CORPUS_BIG_DIR ${CMAKE_CURRENT_BINARY_DIR}/corpus_big)
file(MAKE_DIRECTORY ${STS_CORPUS_BIG_DIR})
sts_add_unit_test(NAME corpus_big COMMAND $<TARGET_FILE:corpus_check> --big ${STS_CORPUS_BIG_DIR})

# The committed corpus must be exactly what make_corpus.py writes.
if(EXISTS /usr/bin/python3)
  set(STS_CORPUS_FRESH ${CMAKE_CURRENT_BINARY_DIR}/corpus_fresh)
  sts_add_unit_test(NAME corpus_fresh COMMAND sh -c
    "rm -rf '${STS_CORPUS_FRESH}' && /usr/bin/python3 '${STS_CORPUS_DIR}/make_corpus.py' --out '${STS_CORPUS_FRESH}' && diff -r '${STS_CORPUS_FRESH}/bad' '${STS_CORPUS_DIR}/bad' && diff -r '${STS_CORPUS_FRESH}/good' '${STS_CORPUS_DIR}/good'")
endif()

# Parse/encode throughput on a 1,000,000-tensor header (figures only, no time asserted).
sts_test_program(bench_header bench_header.c)
sts_add_unit_test(NAME bench_header COMMAND $<TARGET_FILE:bench_header> LABELS bench TIMEOUT 600)
