# cpack.cmake — the logagent .debs (`cpack -G DEB` in a build dir configured with -DCMAKE_INSTALL_PREFIX=/usr).
#
# Three packages, one per install component (every install() rule names one; see packaging/CMakeLists.txt):
#   logagent (component agent, section admin): logagentd, logagentctl, logagent-send, the systemd units,
#     /etc/logagent/logagentd.conf (a conffile), the programs' man pages, deployment.md, the Python client module
#     in /usr/lib/python3/dist-packages/logagent (Recommends: python3-msgpack, which it imports), and the
#     maintainer scripts in deb/ (system user `logagent`, state folder, systemd units through deb-systemd-helper).
#   liblogagent1 (component lib, section libs): liblogagent.so.1 and its real file, the shlibs file that
#     dpkg-shlibdeps reads for programs linked against it, and the ldconfig trigger (deb/lib/triggers).
#   liblogagent-dev (component dev, section libdevel): logagent.h, the liblogagent.so link, liblogagent.a,
#     logagent.pc and logagent(3); Depends: liblogagent1 of the same version.
# Debian's library packaging policy is why the library is not in `logagent`: a shared library goes in a package
# named after its soname, its .so link and header in a -dev package (lintian: package-name-doesnt-match-sonames,
# link-to-shared-library-in-wrong-package). logagent-send links the static library, so `logagent` does not need
# liblogagent1; its Depends are computed by dpkg-shlibdeps from the binaries, plus adduser.
# Each package has /usr/share/doc/<package>/copyright and changelog.gz (from deb/copyright and deb/changelog).
# tests/packaging/test_deb.py builds, inspects (file lists, control fields, lintian), installs and purges them.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME logagent)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "logagent")
set(CPACK_PACKAGE_CONTACT "logagent maintainers <maintainers@users.noreply.r-seed-21b2af50.example>")
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would put that one summary in front of every package's
# description; each description below starts with its own summary line (lines of at most 80 columns).
# Absolute destinations (/etc/logagent, /lib/systemd/system) are staged under DESTDIR like the rest.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)               # <package>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SOURCE logagent)             # one source, three binary packages
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/logagent/logagent")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# logagent: the agent and what operators use with it.
set(CPACK_DEBIAN_AGENT_PACKAGE_NAME ${LOGAGENT_DEB_AGENT})
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION admin)
# Beside what dpkg-shlibdeps finds: postinst creates the system user with adduser.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
# The Python module imports msgpack; hosts without Python apps need neither.
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "python3 (>= 3.9), python3-msgpack")
set(CPACK_DEBIAN_AGENT_DESCRIPTION
"local logging agent shipping msgpack log records to a gRPC log service
logagentd takes log records from applications on a Unix socket (msgpack),
keeps them in a bounded lock-free ring (optionally a disk spool), and ships
them in batches to a gRPC log service with retries and backpressure, so
applications never wait on the network.

This package has the daemon and its systemd units, logagentctl (stats,
health, metrics), logagent-send (like logger(1)) and the Python module
logagent (write_log, LogAgentHandler). The C client library is in
${LOGAGENT_DEB_LIB}, its header and pkg-config file in ${LOGAGENT_DEB_DEV}.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/conffiles
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/postinst
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/prerm
  ${CMAKE_CURRENT_SOURCE_DIR}/deb/postrm)

# liblogagent1: the shared library alone (what a program linked against it needs at run time).
set(CPACK_DEBIAN_LIB_PACKAGE_NAME ${LOGAGENT_DEB_LIB})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
# The shlibs file (CPack has no per-component switch: only liblogagent1 has a shared library to list).
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")   # liblogagent.so.1 keeps its ABI within soname 1
set(CPACK_DEBIAN_LIB_DESCRIPTION
"C client library of the logagent local logging agent
liblogagent hands log records from C programs to logagentd, the local
logging agent, over its Unix socket. It does not block the caller by
default: a background thread writes the records and reconnects when the
agent restarts. It needs only libc.

This package has the shared library. Build against it with ${LOGAGENT_DEB_DEV}.")
# ldconfig through dpkg's trigger (deb/lib/triggers); deb/lib/trigger-only.cmake takes out the postinst and
# postrm that CPack adds to run ldconfig a second time (CPACK_POST_BUILD_SCRIPTS: CMake >= 3.19; an older CPack
# leaves them in, harmless but for lintian's maintscript-calls-ldconfig).
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_SOURCE_DIR}/deb/lib/triggers)
set(CPACK_POST_BUILD_SCRIPTS ${CMAKE_CURRENT_SOURCE_DIR}/deb/lib/trigger-only.cmake)

# liblogagent-dev: what building against the library needs.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME ${LOGAGENT_DEB_DEV})
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${LOGAGENT_DEB_LIB} (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_DEV_PACKAGE_SHLIBDEPS OFF)           # no ELF file that runs: the .a and a link
set(CPACK_DEBIAN_DEV_DESCRIPTION
"C client library of the logagent local logging agent (development files)
liblogagent sends log records from C programs to logagentd, the local
logging agent, over its Unix socket.
.
This package has the header logagent.h, the static library, the pkg-config
file (pkg-config --cflags --libs logagent) and the manual page logagent(3).")

# Test tools (logagent-sink, logagent-bench) have no install rule, so nothing in the staging tree needs removing.
# CPACK_COMPONENTS_ALL stays unset: an install rule without a component would show as a fourth package
# (logagent-Unspecified), which test_deb refuses, instead of being left out silently.

include(CPack)
