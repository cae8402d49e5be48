// The subcommands of reuseport-check, one file each. Each gets its arguments after the
// command name's position (args[0] is the command) and returns the exit status.
#pragma once

#include <string>
#include <vector>

namespace rp::cases {

int run_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);  // run, list

int watch_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int matrix_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int deploy_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int serve_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

int report_command(const std::vector<std::string>& args, const std::vector<std::string>& argv);

// "reuseport-check: <msg>" + a pointer to --help; returns 2.
int usage_error(const std::string& msg);
// Whether this process has CAP_NET_ADMIN and CAP_SYS_ADMIN; `missing` names those it lacks.
bool has_privileges(std::string& missing);

}  // namespace rp::cases
