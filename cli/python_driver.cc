#include "cli/python_driver.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "harness/error.h"
#include "harness/process.h"

#ifndef RP_SOURCE_DIR
#define RP_SOURCE_DIR "."
#endif

namespace rp::cli {

std::filesystem::path source_dir() {
  const char* env = std::getenv("RP_SOURCE_DIR");
  return std::filesystem::path(env && *env ? env : RP_SOURCE_DIR);
}

std::string self_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : p.string();
}

int run_program(const std::vector<std::string>& argv, const std::string& cwd,
                const std::map<std::string, std::string>& env) {
  if (access(argv[0].c_str(), X_OK) != 0) {
    std::fprintf(stderr, "reuseport-check: %s: %s (ci/setup.sh installs Python 3 and its packages)\n",
                 argv[0].c_str(), std::strerror(errno));
    return 127;
  }
  // The terminal's ^C reaches it with us (same process group); it dies with us.
  try {
    rp::SpawnOptions so;
    so.argv = argv;
    so.cwd = cwd;
    so.env = env;
    so.output = rp::SpawnOptions::Output::Inherit;
    so.own_process_group = false;
    so.parent_death_signal = SIGTERM;
    so.stdin_null = false;
    so.name = argv[0];
    rp::Process p = rp::Process::spawn(so);
    return rp::exit_code(p.wait());
  } catch (const rp::SysError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 127;
  }
}

int run_python_module(const std::string& python, const std::string& module, const std::vector<std::string>& args,
                      const std::string& cwd) {
  const std::string src = source_dir().string();
  std::string file = module;
  for (char& c : file)
    if (c == '.') c = '/';
  if (!std::filesystem::is_regular_file(source_dir() / (file + ".py"))) {
    std::fprintf(stderr, "reuseport-check: no driver at %s/%s.py (set RP_SOURCE_DIR to the source tree)\n", src.c_str(),
                 file.c_str());
    return 2;
  }
  std::vector<std::string> argv = {python, "-P", "-m", module};
  argv.insert(argv.end(), args.begin(), args.end());
  const int rc = run_program(argv, cwd.empty() ? src : cwd, {{"PYTHONPATH", src}});
  return rc == 127 ? 2 : rc;
}

}  // namespace rp::cli
