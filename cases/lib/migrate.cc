#include "cases/lib/migrate.h"

#include <stdexcept>

#include "cases/lib/kernel.h"

namespace rp::cases {

std::optional<SysctlScope> set_migrate_req(int value) {
  if (has_feature("tcp_migrate_req"))
    return std::optional<SysctlScope>(std::in_place, "net.ipv4.tcp_migrate_req", std::to_string(value));
  if (value != 0) throw std::runtime_error("net.ipv4.tcp_migrate_req is absent");
  return std::nullopt;
}

std::string FamilyMigrateVariant::name() const {
  return std::string("tcp") + (family == Family::V4 ? "4" : "6") + "_migrate" + std::to_string(migrate);
}

std::vector<FamilyMigrateVariant> family_migrate_variants() {
  std::vector<FamilyMigrateVariant> out;
  for (int m : {0, 1})
    for (Family f : {Family::V4, Family::V6}) out.push_back({f, m});
  return out;
}

}  // namespace rp::cases
