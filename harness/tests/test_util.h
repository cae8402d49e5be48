#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#define RP_REQUIRE_ROOT()                                                       \
  do {                                                                          \
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";      \
  } while (0)
