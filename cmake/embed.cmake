# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# lua/token_bucket.lua is embedded in the binary: src/store_redis.c pulls it in
# with the assembler's .incbin at compile time (path from the SL_SOURCE_DIR
# definition that sl_flags gives every target). Compiler dependency files do
# not see that, so say it here: editing the script rebuilds the objects that
# embed it (tests/unit/test_store_redis.c includes store_redis.c).
# Include this after the tests/ subdirectory is added.
set(SL_EMBEDDED_SCRIPT ${PROJECT_SOURCE_DIR}/lua/token_bucket.lua)
set_property(SOURCE ${PROJECT_SOURCE_DIR}/src/store_redis.c
    APPEND PROPERTY OBJECT_DEPENDS ${SL_EMBEDDED_SCRIPT})
if(EXISTS ${PROJECT_SOURCE_DIR}/tests/unit/test_store_redis.c)
  set_property(SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_store_redis.c
      DIRECTORY ${PROJECT_SOURCE_DIR}/tests
      APPEND PROPERTY OBJECT_DEPENDS ${SL_EMBEDDED_SCRIPT})
endif()
