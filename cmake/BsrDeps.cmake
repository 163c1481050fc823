# Finds the Debian-packaged libraries bsr builds on (installed by scripts/install-deps).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)
pkg_check_modules(FUSE3 REQUIRED IMPORTED_TARGET fuse3)
if(NOT BSR_FUZZ)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
# Standalone Asio is header-only (libasio-dev).
add_library(bsr_asio INTERFACE)
# ASIO_DISABLE_STD_ALIGNED_ALLOC: asio 1.22 otherwise pairs operator new with free()
# across translation units (ASan alloc-dealloc-mismatch).
target_compile_definitions(bsr_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED
                                             ASIO_DISABLE_STD_ALIGNED_ALLOC)
target_link_libraries(bsr_asio INTERFACE Threads::Threads)
# GCC 12 misreports asio's coroutine frame allocator as mismatched new/delete.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(bsr_asio INTERFACE -Wno-mismatched-new-delete)
endif()
