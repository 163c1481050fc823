# Helpers so each src/<module>/CMakeLists.txt stays a few lines.
#
#   bsr_module(NAME config SOURCES a.cc b.cc DEPS bsr_common fmt::fmt)
#     -> static library bsr_<NAME>, include root is src/ ("config/parser.h").
#   bsr_test(NAME config_parser SOURCES parser_test.cc DEPS bsr_config [LABELS unit])
#     -> gtest binary <NAME>_test, tests discovered into ctest with label "unit"
#        (plus any extra labels).

function(bsr_module)
  cmake_parse_arguments(M "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_library(bsr_${M_NAME} STATIC ${M_SOURCES})
  target_include_directories(bsr_${M_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(bsr_${M_NAME} PUBLIC ${M_DEPS})
endfunction()

# Every gtest binary, so the sanitizer build can build just the unit tests.
if(NOT TARGET unit_tests)
  add_custom_target(unit_tests)
endif()
# Every program in bin/ (what the script-driven tests and bench/ run), so CI's normal
# build can skip the gtest binaries it already ran under the sanitizers.
if(NOT TARGET programs)
  add_custom_target(programs)
endif()

function(bsr_test)
  if(BSR_FUZZ)
    return()
  endif()
  cmake_parse_arguments(T "" "NAME" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME}_test ${T_SOURCES})
  target_link_libraries(${T_NAME}_test PRIVATE ${T_DEPS} GTest::gtest GTest::gtest_main
                                               GTest::gmock)
  target_compile_definitions(${T_NAME}_test
                             PRIVATE BSR_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                     BSR_BINARY_DIR="${PROJECT_BINARY_DIR}")
  add_dependencies(unit_tests ${T_NAME}_test)
  gtest_discover_tests(${T_NAME}_test
                       PROPERTIES LABELS "unit;${T_LABELS}"
                       DISCOVERY_TIMEOUT 60)
endfunction()
