# cpack.cmake — the logagent .deb (`cpack -G DEB` in a build dir configured with -DCMAKE_INSTALL_PREFIX=/usr).
#
# One package, `logagent`: logagentd, logagentctl, logagent-send, liblogagent (shared and static), its header
# and pkg-config file, the systemd units, /etc/logagent/logagentd.conf (a conffile), man pages, and the
# maintainer scripts in deb/ (system user `logagent`, state folder, systemd reload), and the Python client
# module in /usr/lib/python3/dist-packages/logagent (Recommends: python3-msgpack, which it imports). Depends are computed by
# dpkg-shlibdeps from the binaries. tests/packaging/test_deb.py builds, inspects, installs and purges it.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME logagent)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "logagent")
set(CPACK_PACKAGE_CONTACT "logagent maintainers <maintainers@users.noreply.r-seed-21b2af50.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "local logging agent shipping msgpack log records to a gRPC log service")
set(CPACK_PACKAGE_DESCRIPTION
"logagentd takes log records from applications on a Unix socket (msgpack), keeps them
in a bounded lock-free ring (optionally a disk spool), and ships them in batches to a
gRPC log service with retries and backpressure, so applications never wait on the network.
.
This package has the daemon and its systemd units, logagentctl (stats, health, metrics),
logagent-send (like logger(1)), liblogagent, the C client library with its header
and pkg-config file, and the Python module logagent (write_log, LogAgentHandler).")
# Absolute destinations (/etc/logagent, /lib/systemd/system) are staged under DESTDIR like the rest.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME logagent)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/logagent/logagent")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# Beside what dpkg-shlibdeps finds: postinst creates the system user with adduser.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# The Python module imports msgpack; hosts without Python apps need neither.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3 (>= 3.9), python3-msgpack")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/conffiles
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/postinst
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/prerm
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/postrm
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/triggers)   # ldconfig for liblogagent.so (CPack adds it only to its own scripts)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Test tools (logagent-sink, logagent-bench) have no install rule, so nothing in the staging tree needs removing.

include(CPack)
