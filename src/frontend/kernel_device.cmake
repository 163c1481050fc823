# /dev/bsr<minor> through a FUSE image + loop device (hosts without the nbd driver).
# Included from src/frontend/CMakeLists.txt.
target_sources(bsr_frontend PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/fuse_image.cc
  ${CMAKE_CURRENT_LIST_DIR}/kernel_device.cc
  ${CMAKE_CURRENT_LIST_DIR}/kernel_device_cleanup.cc
  ${CMAKE_CURRENT_LIST_DIR}/kernel_device_loop.cc)
target_link_libraries(bsr_frontend PUBLIC PkgConfig::FUSE3)

if(NOT BSR_FUZZ)
  # Serves one file as /dev/bsr<minor> for tests/kdev; not installed.
  add_executable(kdev_file_server ${CMAKE_CURRENT_LIST_DIR}/kdev_file_server_main.cc)
  target_link_libraries(kdev_file_server PRIVATE bsr_frontend CLI11::CLI11)
  set_target_properties(kdev_file_server PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
  add_dependencies(programs kdev_file_server)
endif()

# The cleanup parsers need nothing; the device tests need root, /dev/fuse and loop.
bsr_test(NAME kernel_device
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/kernel_device_cleanup_test.cc
          ${CMAKE_CURRENT_LIST_DIR}/fuse_image_test.cc
          ${CMAKE_CURRENT_LIST_DIR}/kernel_device_test.cc
  DEPS bsr_frontend
  LABELS kdev)
