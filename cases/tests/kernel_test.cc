// The feature probes of cases/lib/kernel.cc answer with the kernel's word only: our own
// program failing to load where the kernel offers its type is an error that every case
// needing the feature sees (FeatureProbeError), never "the kernel lacks it".
#include "cases/lib/kernel.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "probes/reuseport_sockmap.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::KernelAnswer;
using probes::SteerProgram;

bool our_program_loads(SteerProgram p) {
  try {
    probes::ReuseportSteer s(p);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The minimal program and ours agree on every kernel of the matrix: both load (5.14 and
// later for Migrate), or the kernel refuses the minimal one too (Debian's 5.10).
TEST(KernelAnswer, AgreesWithOurProgramOnThisKernel) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF_PROG_LOAD)";
  for (SteerProgram p : {SteerProgram::Filter, SteerProgram::Select, SteerProgram::Migrate}) {
    const KernelAnswer k = probes::kernel_answer(p);
    EXPECT_EQ(k.kind, our_program_loads(p) ? KernelAnswer::Kind::Offers : KernelAnswer::Kind::Refuses)
        << probes::to_string(p) << ": " << k.why;
  }
}

// The test hook fails our program; the kernel still offers the type: ERROR, every time it
// is asked (the failure is remembered, not turned into "absent" on the second call).
TEST(Feature, OurMigrateProgramFailingIsAProbeErrorNotAbsence) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF_PROG_LOAD)";
  if (probes::kernel_answer(SteerProgram::Migrate).kind != KernelAnswer::Kind::Offers)
    GTEST_SKIP() << "this kernel refuses sk_reuseport/migrate: the absence is its answer";
  setenv("RP_TEST_STEER_FAIL", "1", 1);
  for (int call = 0; call < 2; ++call) {
    try {
      (void)has_feature("sk_reuseport_migrate");
      ADD_FAILURE() << "call " << call << ": no error";
    } catch (const FeatureProbeError& e) {
      EXPECT_EQ(e.feature(), "sk_reuseport_migrate");
      const std::string what = e.what();
      EXPECT_NE(what.find("RP_TEST_STEER_FAIL"), std::string::npos) << what;
      EXPECT_NE(what.find("our program is at fault"), std::string::npos) << what;
    }
  }
  unsetenv("RP_TEST_STEER_FAIL");
}

TEST(Feature, UnknownNameIsAnArgumentError) {
  EXPECT_THROW((void)has_feature("no_such_feature"), std::invalid_argument);
}

// What a kernel without them is told: the SKIP reason is "<name> absent: <description>".
TEST(Feature, KernelFeaturesNameTheirConfigOptions) {
  EXPECT_NE(features().at("sock_diag").description.find("CONFIG_INET_DIAG"), std::string::npos);
  EXPECT_NE(features().at("sock_diag").description.find("CONFIG_INET_TCP_DIAG"), std::string::npos);
  EXPECT_NE(features().at("bpf_syscall").description.find("CONFIG_BPF_SYSCALL"), std::string::npos);
  EXPECT_NE(features().at("btf").description.find("CONFIG_DEBUG_INFO_BTF"), std::string::npos);
}

// This machine's kernel has all three (the harness's own sock_diag tests need it): a probe
// that says otherwise here is broken.
TEST(Feature, KernelFeaturesArePresentWhereTheKernelHasThem) {
  EXPECT_TRUE(has_feature("sock_diag"));
  EXPECT_TRUE(has_feature("bpf_syscall"));
  EXPECT_EQ(has_feature("btf"), access("/sys/kernel/btf/vmlinux", F_OK) == 0);
}

// The sk_lookup feature (bpf/reuseport_sockmap.bpf.c) follows the same rule: the minimal
// program and ours agree, and ours failing where the kernel offers the type is an ERROR.
TEST(KernelAnswer, SockmapProgramsAgreeWithOursOnThisKernel) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF_PROG_LOAD)";
  for (auto p : {probes::SockmapProgram::SelectFromMap, probes::SockmapProgram::LookupAssign}) {
    bool ours = true;
    try {
      probes::ReuseportSockmap s(p);
    } catch (const std::exception&) {
      ours = false;
    }
    const KernelAnswer k = probes::kernel_answer(p);
    EXPECT_EQ(k.kind, ours ? KernelAnswer::Kind::Offers : KernelAnswer::Kind::Refuses) << probes::to_string(p) << ": " << k.why;
  }
}

TEST(Feature, OurSkLookupProgramFailingIsAProbeErrorNotAbsence) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF_PROG_LOAD)";
  if (probes::kernel_answer(probes::SockmapProgram::LookupAssign).kind != KernelAnswer::Kind::Offers)
    GTEST_SKIP() << "this kernel refuses sk_lookup: the absence is its answer";
  setenv("RP_TEST_STEER_FAIL", "1", 1);
  try {
    (void)has_feature("sk_lookup");
    ADD_FAILURE() << "no error";
  } catch (const FeatureProbeError& e) {
    EXPECT_EQ(e.feature(), "sk_lookup");
    EXPECT_NE(std::string(e.what()).find("our program is at fault"), std::string::npos) << e.what();
  }
  unsetenv("RP_TEST_STEER_FAIL");
}

}  // namespace
}  // namespace rp::cases
