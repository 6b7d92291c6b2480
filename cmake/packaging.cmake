# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The Debian package: man pages made from man/*.md by pandoc, the files a
# daemon needs around its binary (conf, systemd unit, logrotate, log
# directory, maintainer scripts in packaging/), and CPack's DEB generator.
#
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-deb --target package     # build-deb/sluice_<version>-1_<arch>.deb
#
# The prefix must be /usr: it is what puts the conf in /etc and makes
# /etc/sluice/sluice.conf the binary's default (cmake/buildinfo.cmake). The
# package target of a tree configured otherwise stops with that message.
# tests/integration/a_package.py builds the package this way and checks it.
include(GNUInstallDirs)

# ---- compiler flags ---------------------------------------------------------
# An optimised build for /usr gets Debian's hardening flags (fortify, stack
# protector, relro, bindnow), as a package built by dpkg-buildpackage would.
# Not in Debug: _FORTIFY_SOURCE warns without optimisation, and -Werror.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
  find_program(DPKG_BUILDFLAGS_EXE dpkg-buildflags)
  if(DPKG_BUILDFLAGS_EXE)
    foreach(kind CPPFLAGS CFLAGS LDFLAGS)
      execute_process(COMMAND env DEB_BUILD_MAINT_OPTIONS=hardening=+all ${DPKG_BUILDFLAGS_EXE}
          --get ${kind} OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
      separate_arguments(SL_DEB_${kind} UNIX_COMMAND "${flags}")
    endforeach()
    target_compile_options(sl_flags INTERFACE ${SL_DEB_CPPFLAGS} ${SL_DEB_CFLAGS})
    target_link_options(sl_flags INTERFACE ${SL_DEB_LDFLAGS})
  endif()
endif()

# ---- man pages -----------------------------------------------------------
# pandoc 2.17 (Debian 12) writes \f[C] and a .PP right after each .SH, which
# mandoc -T lint warns about; the sed turns them into \f[CR] and drops the
# .PP so that both mandoc and groff -ww read the pages without a warning.
find_program(PANDOC_EXE pandoc)
set(SL_MAN_PAGES sluice.8 sluice.conf.5)
set(SL_MAN_OUTPUTS)
if(PANDOC_EXE)
  file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/man)
  foreach(page ${SL_MAN_PAGES})
    set(src ${PROJECT_SOURCE_DIR}/man/${page}.md)
    set(out ${PROJECT_BINARY_DIR}/man/${page})
    add_custom_command(OUTPUT ${out} ${out}.gz
        COMMAND sh -c "\"$0\" -s -f markdown-smart -t man -M footer=\"sluice $1\" \"$2\" | sed -e '/^\\.SH/{n;/^\\.PP$/d;}' -e 's/\\\\f\\[C\\]/\\\\f[CR]/g' >\"$3\""
            ${PANDOC_EXE} ${PROJECT_VERSION} ${src} ${out}
        COMMAND gzip -9n -c ${out} > ${out}.gz
        DEPENDS ${src} VERBATIM)
    list(APPEND SL_MAN_OUTPUTS ${out})
    string(REGEX MATCH "[0-9]$" section ${page})
    install(FILES ${out}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${SL_MAN_OUTPUTS})
else()
  message(STATUS "man pages: skipped, pandoc not found (scripts/deps.sh installs it)")
endif()

# ---- files around the binary ----------------------------------------------
set(SL_DEB_VERSION ${PROJECT_VERSION}-1)
set(SL_PKG ${PROJECT_SOURCE_DIR}/packaging)
configure_file(${SL_PKG}/debian/changelog ${PROJECT_BINARY_DIR}/packaging/changelog.Debian @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
    COMMAND gzip -9n -c ${PROJECT_BINARY_DIR}/packaging/changelog.Debian
        > ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
    DEPENDS ${SL_PKG}/debian/changelog VERBATIM)
add_custom_target(deb_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz)

install(FILES ${SL_PKG}/sluice.conf DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/sluice)
install(FILES ${SL_PKG}/sluice.logrotate DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d
    RENAME sluice)
install(FILES ${SL_PKG}/sluice.service DESTINATION lib/systemd/system)
install(DIRECTORY DESTINATION ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/log/sluice)
install(FILES ${SL_PKG}/debian/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz
    README.md docs/configuration.md docs/operations.md docs/metrics.md docs/rate-limiting.md
    docs/api-lifecycle.md
    DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The packaged conf is checked like every file in conf/.
add_test(NAME conf.packaging-sluice.conf COMMAND sluice -t -c ${SL_PKG}/sluice.conf)
set_tests_properties(conf.packaging-sluice.conf PROPERTIES LABELS unit)

# ---- CPack -----------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VENDOR "the sluice developers")
set(CPACK_PACKAGE_CONTACT "sluice developers <dev@sluice.invalid>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION httpd)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "logrotate, redis-server")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "rate-limiting HTTP/1.1 reverse proxy
sluice sits in front of HTTP API servers: it checks every request against
token buckets, forwards the admitted ones to an upstream pool and answers
the rest with 429, Retry-After and the IETF RateLimit header fields. The
buckets live in process or in Redis, where several instances share one
fleet-wide limit. Configured by a sandboxed Lua file, observed through
Prometheus metrics, run by systemd as an unprivileged user.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${SL_PKG}/debian/conffiles ${SL_PKG}/debian/postinst
    ${SL_PKG}/debian/prerm ${SL_PKG}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Read by cpack when it runs: refuses a tree whose paths are not Debian's.
set(SL_PACKAGE_PREFIX ${CMAKE_INSTALL_PREFIX})
configure_file(${PROJECT_SOURCE_DIR}/cmake/cpack-check.cmake.in
    ${PROJECT_BINARY_DIR}/packaging/cpack-check.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/packaging/cpack-check.cmake)
include(CPack)
