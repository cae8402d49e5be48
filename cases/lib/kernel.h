// The running kernel and what it can do. Features are probed by what the kernel does or
// exposes, never inferred from the version alone; the version is only for version gates in
// the expectations file.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

namespace rp::cases {

struct KernelVersion {
  std::array<int, 3> v{0, 0, 0};
  // "6.18.44-fc-v669" -> 6.18.44; "5.10.0-43-cloud-amd64" -> 5.10.0. nullopt if unparsable.
  static std::optional<KernelVersion> parse(const std::string& s);
  auto operator<=>(const KernelVersion&) const = default;
  std::string str() const;
};

std::string kernel_release();  // uname -r
// The upstream version of the running kernel. Distribution kernels hide the stable
// sublevel in uname -r ("6.1.0-50-cloud-amd64" is 6.1.176): Debian states it in uname -v
// ("... Debian 6.1.176-1 (2025-...)"), which wins when its major.minor agrees.
KernelVersion running_kernel();
KernelVersion upstream_version(const std::string& release, const std::string& version);

// A feature the expectations may require: its name, what it means, and how it is probed.
// The probe returns the kernel's answer: true, or false only when the kernel itself says it
// lacks the feature (an unknown program type, a missing sysctl or counter, ENOPROTOOPT).
// When the probe cannot get that answer (a file it cannot read, a program of ours that does
// not load where the kernel offers the type) it throws: that is the tool's failure.
struct Feature {
  std::string name;
  std::string description;
  std::function<bool()> probe;
};
const std::map<std::string, Feature>& features();

// A feature probe that failed instead of answering: a case that needs the feature is an
// ERROR with this message, never a SKIP (the kernel was not shown to lack anything).
class FeatureProbeError : public std::runtime_error {
 public:
  FeatureProbeError(const std::string& feature, const std::string& why);
  const std::string& feature() const noexcept { return feature_; }

 private:
  std::string feature_;
};

// Probes once and remembers the answer (or the failure, thrown again as FeatureProbeError
// on every call); std::invalid_argument on an unknown name.
bool has_feature(const std::string& name);

}  // namespace rp::cases
