# Injected by scripts/setup.sh (-DCMAKE_PROJECT_INCLUDE=...) when building the
# interfaces against the ROS 2 pip wheels instead of a system ROS install.
# The wheels' CMake exports name the Python headers of the machine that built
# them (/opt/python/cp311-cp311/include/python3.11), which does not exist here;
# CMake refuses to generate with a missing include directory. The real headers
# come in through Python3::Module, so drop the missing paths once every
# find_package() has run.
function(sora_ros_drop_missing_include_dirs)
  get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(kept "")
    foreach(dir IN LISTS dirs)
      if(dir MATCHES "^\\$<" OR EXISTS "${dir}")
        list(APPEND kept "${dir}")
      endif()
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL sora_ros_drop_missing_include_dirs)
