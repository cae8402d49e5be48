// One conformance case as a GoogleTest suite: a test per variant, each running the case's
// scenario(variant) through run_case(), named by the variant.
//
//   RP_CASE(bind_rules, ::testing::ValuesIn(variants()));
//
// expects, in the enclosing namespace, a type `Variant` with a name (a `name()` member
// function or a `name` field) and `nlohmann::json scenario(const Variant&)`.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "cases/lib/case.h"

namespace rp::cases {

template <class V>
std::string variant_name(const V& v) {
  if constexpr (requires { v.name(); })
    return v.name();
  else
    return v.name;
}

}  // namespace rp::cases

#define RP_CASE(NAME, ...)                                                                              \
  class NAME : public ::testing::TestWithParam<Variant> {};                                             \
  TEST_P(NAME, run) {                                                                                   \
    ::rp::cases::run_case(::rp::cases::current_case_name(), ::rp::cases::current_variant(),             \
                          [v = GetParam()] { return scenario(v); });                                    \
  }                                                                                                     \
  INSTANTIATE_TEST_SUITE_P(Variants, NAME, __VA_ARGS__,                                                 \
                           [](const auto& info) { return ::rp::cases::variant_name(info.param); })
