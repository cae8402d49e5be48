// The subcommands of reuseport-check, one file each. Each gets its arguments after the
// command name's position (args[0] is the command) and returns the exit status.
#pragma once

#include <string>
#include <vector>

namespace rp::cli {

int run_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int list_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int watch_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int matrix_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int deploy_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int serve_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int report_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int group_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int merge_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);


}  // namespace rp::cli
