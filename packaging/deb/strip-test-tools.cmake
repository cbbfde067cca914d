# strip-test-tools.cmake — CPack pre-build script: removes the test tools (logagent-sink, logagent-bench) from
# the staging tree before the package is made, so a stray install rule cannot ship them.
foreach(tool logagent-sink logagent-bench)
  file(GLOB found "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/usr/bin/${tool}")
  foreach(f ${found})
    message(STATUS "logagent package: leaving out test tool ${f}")
    file(REMOVE ${f})
  endforeach()
endforeach()
