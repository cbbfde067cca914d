# trigger-only.cmake — a CPack post-build script (CPACK_POST_BUILD_SCRIPTS in packaging/cpack.cmake): takes the
# postinst and postrm that CPack writes into the library package out again.
#
# CPack (3.25) adds scripts that run ldconfig to every package with a shared library under /usr/lib, unless the
# package brings its own postinst and postrm. liblogagent1 has none and needs none: its ldconfig runs through
# dpkg's trigger (deb/lib/triggers, `activate-noawait ldconfig`), as Debian wants (lintian:
# maintscript-calls-ldconfig). So the package is unpacked, the two scripts removed, and it is packed again with
# dpkg-deb (root-owned files, as CPack made them). Runs with the variables of CPackConfig.cmake.
foreach(deb IN LISTS CPACK_PACKAGE_FILES)
  get_filename_component(name "${deb}" NAME)
  if(NOT name MATCHES "^${CPACK_DEBIAN_LIB_PACKAGE_NAME}_")
    continue()
  endif()
  set(tree "${deb}.tree")
  file(REMOVE_RECURSE "${tree}")
  execute_process(COMMAND dpkg-deb -R "${deb}" "${tree}" COMMAND_ERROR_IS_FATAL ANY)
  file(READ "${tree}/DEBIAN/triggers" triggers)
  if(NOT triggers MATCHES "activate-noawait ldconfig")
    message(FATAL_ERROR "${name}: no ldconfig trigger, so its ldconfig scripts stay")
  endif()
  file(REMOVE "${tree}/DEBIAN/postinst" "${tree}/DEBIAN/postrm")
  execute_process(COMMAND dpkg-deb --root-owner-group -b "${tree}" "${deb}" OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  file(REMOVE_RECURSE "${tree}")
endforeach()
