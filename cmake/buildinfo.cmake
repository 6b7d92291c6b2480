# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# What `sluice -V` reports about its own build, and the conf path sluice reads
# when no -c is given. That default is conf/sluice.conf (the repository's
# working example, relative to the current directory) unless the build is for
# an install under /usr (a Debian package: CMAKE_INSTALL_PREFIX=/usr), where it
# is /etc/sluice/sluice.conf. -DSL_DEFAULT_CONF=... overrides either.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(SL_DEFAULT_CONF_INIT /etc/sluice/sluice.conf)
else()
  set(SL_DEFAULT_CONF_INIT conf/sluice.conf)
endif()
set(SL_DEFAULT_CONF ${SL_DEFAULT_CONF_INIT} CACHE STRING "conf file sluice reads without -c")
# A ';' would split the definition in two: "address;undefined" is shown
# with commas, as -fsanitize= takes it.
string(REPLACE ";" "," SL_BUILD_SANITIZE "${SL_SANITIZE}")
target_compile_definitions(sluice PRIVATE SL_DEFAULT_CONF="${SL_DEFAULT_CONF}"
    SL_BUILD_TYPE="${CMAKE_BUILD_TYPE}" SL_BUILD_SANITIZE="${SL_BUILD_SANITIZE}")
