# bpf_object(<name> <source.bpf.c>)
#
# Compiles a libbpf CO-RE program with clang -target bpf and turns the object into a
# skeleton with `bpftool gen skeleton`. Yields an INTERFACE target <name>_skel whose include
# directory holds <name>.skel.h, and which links libbpf. vmlinux.h is generated once per
# build tree from the running kernel's BTF (/sys/kernel/btf/vmlinux): CO-RE relocates the
# field offsets against the BTF of whatever kernel loads the program later.

find_program(RP_CLANG NAMES clang clang-16 clang-15 clang-14 REQUIRED)
find_program(RP_BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf>=1.0)

set(RP_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen)
set(RP_VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "BTF used to generate vmlinux.h")
if(NOT EXISTS ${RP_VMLINUX_BTF})
  message(FATAL_ERROR "No BTF at ${RP_VMLINUX_BTF}: the probes need a kernel built with "
                      "CONFIG_DEBUG_INFO_BTF, or configure with -DRP_ENABLE_BPF=OFF")
endif()
add_custom_command(
  OUTPUT ${RP_BPF_GEN_DIR}/vmlinux.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${RP_BPF_GEN_DIR}
  COMMAND ${RP_BPFTOOL} btf dump file ${RP_VMLINUX_BTF} format c > ${RP_BPF_GEN_DIR}/vmlinux.h
  COMMENT "Generating vmlinux.h from ${RP_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(rp_vmlinux_h DEPENDS ${RP_BPF_GEN_DIR}/vmlinux.h)

execute_process(COMMAND uname -m OUTPUT_VARIABLE _rp_arch OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_rp_arch STREQUAL "x86_64")
  set(RP_BPF_ARCH x86)
elseif(_rp_arch STREQUAL "aarch64")
  set(RP_BPF_ARCH arm64)
else()
  set(RP_BPF_ARCH ${_rp_arch})
endif()

function(bpf_object name src)
  get_filename_component(_src ${src} ABSOLUTE)
  get_filename_component(_dir ${_src} DIRECTORY)
  set(_obj ${RP_BPF_GEN_DIR}/${name}.bpf.o)
  set(_skel ${RP_BPF_GEN_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${_obj}
    COMMAND ${RP_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${RP_BPF_ARCH}
            -I${RP_BPF_GEN_DIR} -I${_dir} -I${CMAKE_SOURCE_DIR}
            -Wall -Wno-unused-function -c ${_src} -o ${_obj}
    DEPENDS ${_src} ${RP_BPF_GEN_DIR}/vmlinux.h ${ARGN}
    IMPLICIT_DEPENDS C ${_src}
    COMMENT "BPF ${name}: clang -target bpf"
    VERBATIM)
  add_custom_command(
    OUTPUT ${_skel}
    COMMAND ${RP_BPFTOOL} gen skeleton ${_obj} name ${name} > ${_skel}
    DEPENDS ${_obj}
    COMMENT "BPF ${name}: bpftool gen skeleton"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${_skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${RP_BPF_GEN_DIR})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
