// Running the Python of the source tree (the kernel-matrix drivers under ci/matrix) from
// the program: report --kernels and deploy --kernels hand their work to a module there.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace rp::cli {

// $RP_SOURCE_DIR, else the tree this binary was built from.
std::filesystem::path source_dir();

// This executable's path (what a driver runs again on the host).
std::string self_path();

// Runs argv[0] with argv (in cwd, with env added) and waits: its exit status, 127 when it
// could not be started. It shares our terminal and process group and dies with us.
int run_program(const std::vector<std::string>& argv, const std::string& cwd = {},
                const std::map<std::string, std::string>& env = {});

// `python -P -m module args...` with the source tree as the import root, in `cwd` (default:
// the source tree): the module's exit status, 2 when the module or the interpreter is missing.
int run_python_module(const std::string& python, const std::string& module, const std::vector<std::string>& args,
                      const std::string& cwd = {});

}  // namespace rp::cli
