// The subcommands of reuseport-check, one file each. Each gets its arguments after the
// command name's position (args[0] is the command) and returns the exit status.
#pragma once

#include <string>
#include <vector>

namespace rp::cases {

int run_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int list_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int watch_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int matrix_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int deploy_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int serve_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int report_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

// For the subcommands not yet on rp::cli (cli/common/options.h), which these forward to.
int usage_error(const std::string& msg);
bool has_privileges(std::string& missing);

}  // namespace rp::cases
