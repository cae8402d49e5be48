// What the migration cases share: net.ipv4.tcp_migrate_req set for a scenario, and the
// variants "tcp4/tcp6 x migrate 0/1" several of them run.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {

// Sets net.ipv4.tcp_migrate_req (per network namespace, 5.14+) for the scope's life. A kernel
// without the sysctl migrates nothing, which is what 0 asks for: nothing to set. Asking it
// for 1 is our error (the expectations' `requires` skips such a variant before it runs).
std::optional<SysctlScope> set_migrate_req(int value);

// tcp4_migrate0, tcp6_migrate0, tcp4_migrate1, tcp6_migrate1 (in this order).
struct FamilyMigrateVariant {
  Family family;
  int migrate;
  std::string name() const;
};
std::vector<FamilyMigrateVariant> family_migrate_variants();

}  // namespace rp::cases
