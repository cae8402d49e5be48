// The grouping, share and change logic of `reuseport-check group` (cli/group/model.cc),
// without a kernel: rows of members as sock_diag and the socket iterator would give them.
#include "cli/group/model.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace rp::group {
namespace {

Member member(uint64_t cookie, const std::string& addr, int family = AF_INET, uint32_t uid = 0) {
  Member m;
  m.diag.protocol = IPPROTO_TCP;
  m.diag.family = family;
  m.diag.address = addr;
  m.diag.port = 8080;
  m.diag.cookie = cookie;
  m.diag.uid = uid;
  if (family == AF_INET6) m.diag.v6only = false;
  return m;
}

Member with_kernel(Member m, uint32_t id, bool prog = false) {
  KernelGroup k;
  k.reuseport = true;
  k.has_group = true;
  k.number = static_cast<int>(id);
  k.reuseport_id = id;
  k.num_socks = 2;
  k.has_prog = prog;
  k.prog_id = prog ? 42 : 0;
  k.prog_type = "sk_reuseport";
  k.prog_name = "steer";
  m.kernel = k;
  return m;
}

TEST(GroupModel, InferredGroupsSplitByAddressFamilyAndUid) {
  std::vector<Member> ms = {member(1, "127.0.0.1"), member(2, "127.0.0.1"), member(3, "127.0.0.2"),
                            member(4, "::", AF_INET6), member(5, "127.0.0.1", AF_INET, 65534)};
  auto groups = assign_groups(ms);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].cookies, (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(groups[0].from_kernel);
  EXPECT_NE(groups[0].label.find("inferred"), std::string::npos);
  EXPECT_TRUE(groups[0].program.is_null());
  EXPECT_FALSE(groups[0].program_why.empty());
  EXPECT_EQ(ms[4].group, groups[3].label);  // another uid cannot join (same-euid rule)
}

TEST(GroupModel, KernelIdsWinOverTheInference) {
  // Same address and port, two groups by the kernel's word (e.g. one listener shut down and
  // listening again in a new group): the kernel's answer is the one shown.
  std::vector<Member> ms = {with_kernel(member(1, "127.0.0.1"), 7, true), with_kernel(member(2, "127.0.0.1"), 9)};
  auto groups = assign_groups(ms);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_TRUE(groups[0].from_kernel);
  EXPECT_EQ(groups[0].reuseport_id, 7u);
  EXPECT_EQ(groups[0].program["id"], 42);
  EXPECT_EQ(groups[1].program, "none");
}

TEST(GroupModel, SocketWithoutReuseportIsAloneAndHasNoProgram) {
  Member m = member(1, "127.0.0.1");
  m.kernel = KernelGroup{};  // SO_REUSEPORT off, no sk_reuseport_cb
  std::vector<Member> ms = {m, member(2, "127.0.0.1")};
  auto groups = assign_groups(ms);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].program, "none");
}

TEST(GroupModel, SharesArePerGroupAndAbsentCookiesCountZero) {
  std::vector<Member> ms = {with_kernel(member(1, "127.0.0.1"), 7), with_kernel(member(2, "127.0.0.1"), 7),
                            with_kernel(member(3, "127.0.0.1"), 7), with_kernel(member(4, "127.0.0.2"), 8)};
  auto groups = assign_groups(ms);
  assign_shares(ms, groups, std::map<uint64_t, uint64_t>{{1, 30}, {2, 10}, {4, 5}, {99, 1000}});
  EXPECT_EQ(groups[0].fresh, 40u);  // cookie 99 is no member here: not in any group's total
  EXPECT_DOUBLE_EQ(*ms[0].share, 0.75);
  EXPECT_DOUBLE_EQ(*ms[1].share, 0.25);
  EXPECT_EQ(ms[2].fresh, 0u);
  EXPECT_DOUBLE_EQ(*ms[2].share, 0.0);
  EXPECT_DOUBLE_EQ(*ms[3].share, 1.0);
}

TEST(GroupModel, NoCountsMeansNoShareNotZero) {
  std::vector<Member> ms = {member(1, "127.0.0.1")};
  auto groups = assign_groups(ms);
  assign_shares(ms, groups, std::nullopt);
  EXPECT_FALSE(ms[0].fresh);
  EXPECT_FALSE(ms[0].share);
  EXPECT_FALSE(groups[0].fresh);
  EXPECT_TRUE(to_json(ms[0])["share"].is_null());
}

TEST(GroupModel, AnIdleGroupHasNoShares) {
  std::vector<Member> ms = {member(1, "127.0.0.1"), member(2, "127.0.0.1")};
  auto groups = assign_groups(ms);
  assign_shares(ms, groups, std::map<uint64_t, uint64_t>{});
  EXPECT_EQ(ms[0].fresh, 0u);
  EXPECT_FALSE(ms[0].share);  // 0 of 0 is no share
}

TEST(GroupModel, DeltaAndDiff) {
  auto d = delta({{1, 10}, {2, 5}, {3, 2}}, {{1, 4}, {3, 7}});
  EXPECT_EQ(d, (std::map<uint64_t, uint64_t>{{1, 6}, {2, 5}, {3, 2}}));
  auto c = diff({1, 2, 3}, {2, 3, 4, 5});
  EXPECT_EQ(c.joined, (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(c.left, (std::vector<uint64_t>{1}));
}

}  // namespace
}  // namespace rp::group
