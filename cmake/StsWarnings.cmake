# The warning set of LZ4's and zstd's lib/ builds, each flag added only when
# the compiler supports it.  sts_target_warnings(tgt) applies it to a target.
include(CheckCCompilerFlag)
set(STS_WARNING_FLAGS)
foreach(flag -Wall -Wextra -Wcast-qual -Wcast-align -Wshadow -Wswitch-enum
             -Wstrict-prototypes -Wmissing-prototypes -Wundef -Wpointer-arith
             -Wstrict-aliasing=1 -Wformat=2 -Wvla -Wwrite-strings -Wimplicit-fallthrough)
  string(MAKE_C_IDENTIFIER "HAVE${flag}" var)
  check_c_compiler_flag(${flag} ${var})
  if(${var})
    list(APPEND STS_WARNING_FLAGS ${flag})
  endif()
endforeach()

function(sts_target_warnings tgt)
  target_compile_options(${tgt} PRIVATE ${STS_WARNING_FLAGS})
  if(STS_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
endfunction()
