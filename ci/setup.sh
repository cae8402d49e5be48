#!/usr/bin/env bash
# Installs what reuseport-check needs on a Debian 12 (or newer) machine and builds it into
# build/. Idempotent: packages already present are not fetched again.
#   ci/setup.sh            install + configure + build
#   ci/setup.sh --no-build install only
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config
  # BPF: clang -target bpf, skeletons, libbpf
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  # libraries
  libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  # running cases: network namespaces, sysctls
  iproute2 procps
  # the pytest driver and the kernel matrix (qemu guests with a busybox initramfs)
  python3 python3-pytest python3-pytest-xdist python3-matplotlib
  # the schema and JUnit checks of the output (results/schemas, the tests)
  python3-jsonschema python3-junitparser
  qemu-system-x86 busybox-static cpio debian-archive-keyring
  # the newer kernels and their modules are zstd-compressed (ci/vm/pvh.py, ci/matrix/modules.py)
  zstd lz4
  # the deploy examples (docs/deploy.md): nginx with `listen ... reuseport`
  nginx-light
  # the HAProxy and Caddy deploy examples (docs/examples/haproxy, docs/examples/caddy) and
  # the real servers table (results/servers/measure.py, which runs nginx-light's nginx too)
  haproxy caddy
  # bench/vs_tools.py: the load generator against the tools users know
  wrk apache2-utils
  # `group --udp` and `deploy --udp` against a real UDP server (cases/tests/test_group_unbound.py,
  # test_deploy_udp.py, docs/examples/unbound)
  unbound
)

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "ci/setup.sh: installing packages needs root (or sudo)" >&2; exit 2
  fi
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci/setup.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  # nginx and unbound are only run by the tests and examples, in namespaces of their own:
  # keep their packages from starting the system services on ports 80 and 53 (policy-rc.d
  # 101 = "not now").
  policy_rc=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy_rc=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy_rc" >/dev/null
    as_root chmod +x "$policy_rc"
  fi
  rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  [[ -n $policy_rc ]] && as_root rm -f "$policy_rc"
  ((rc == 0)) || { echo "ci/setup.sh: apt-get install failed ($rc)" >&2; exit $rc; }
fi

[[ ${1:-} == --no-build ]] && exit 0

bpf=ON
if [[ ! -r /sys/kernel/btf/vmlinux ]]; then
  echo "ci/setup.sh: no BTF at /sys/kernel/btf/vmlinux: building without the BPF probes" >&2
  bpf=OFF
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRP_ENABLE_BPF=$bpf >/dev/null
ninja -C build
echo "ci/setup.sh: built build/bin/reuseport-check"
