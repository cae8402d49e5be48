// The cases linked into this binary, as `run` and `list` select them: a case is a
// GoogleTest suite, a variant one of its tests.
#pragma once

#include <string>
#include <vector>

namespace rp::cli {

struct CaseId {
  std::string case_name, variant, full;  // full: the GoogleTest name
};

// Every case x variant, in the order GoogleTest runs them.
std::vector<CaseId> registered();

// `--case GLOB`: a glob without '/' selects cases by name, one with '/' variants as
// CASE/VARIANT. No globs: everything.
bool selected(const CaseId& id, const std::vector<std::string>& globs);

// "no case matches ..." and the known case names, on stderr.
void print_known(const std::vector<std::string>& globs);

}  // namespace rp::cli
