// Kernels compiled once per CPU capability, and the runtime choice among them.
//
// One build must run on any x86-64 CPU and still use AVX-512 where the CPU has it, so nothing is
// compiled with -march=native. As in ATen's native/cpu kernels, each source file under
// csrc/cpu/vectorized/ is compiled three times (see setup.py, _CPU_CAPABILITIES):
//   DEFAULT  no extra flags: at::vec::Vectorized is a plain array of scalars
//   AVX2     -mavx2 -mfma -mf16c -mbmi -mbmi2
//   AVX512   -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma
// each time with CPU_CAPABILITY=<name> and CPU_CAPABILITY_<name> defined, which select ATen's
// vector headers (<ATen/cpu/vec/vec.h>) and name the namespace that file's kernels live in:
// memc::DEFAULT, memc::AVX2, memc::AVX512. Only x86-64 builds compile AVX2 and AVX512
// (MEMC_CPU_X86_CAPABILITIES); other machines get DEFAULT alone.
//
// The entry points (csrc/cpu/*.cpp, compiled once without extra flags) call
// MEMC_CPU_KERNEL(name), which picks memc::<capability>::name by at::get_cpu_capability():
// the CPU's best, or what the environment variable ATEN_CPU_CAPABILITY=default|avx2|avx512 asks
// for (read once per process; the tests use it to run every path).
//
// To vectorise another op (flow_projection, say):
//   1. declare its kernels in a header, once per capability, with
//        #define DECLARE(CAPABILITY) namespace CAPABILITY { void my_rows(const MyViews&, int64_t, int64_t); }
//        MEMC_FOR_EACH_CPU_CAPABILITY(DECLARE)
//      (arguments plain structs of pointers and sizes, the same in every translation unit);
//   2. define them in csrc/cpu/vectorized/<op>_kernels.cpp inside
//      `namespace memc { namespace CPU_CAPABILITY { ... } }`, including <ATen/cpu/vec/vec.h>;
//      explicitly instantiate any templates the entry point names;
//   3. call MEMC_CPU_KERNEL(my_rows)(views, begin, end) from the entry point, for example inside
//      at::parallel_for. Keep at::parallel_for, allocations and static data out of the vectorised
//      files: code there may use AVX-512 and must only run once the capability has been checked.
//   No setup.py change: every .cpp under csrc/cpu/vectorized/ is built per capability.
#pragma once

#include <ATen/Version.h>

#include <string>

namespace memc {

#if defined(MEMC_CPU_X86_CAPABILITIES)
#define MEMC_FOR_EACH_CPU_CAPABILITY(m) m(DEFAULT) m(AVX2) m(AVX512)

// The capability ATen chose for this process (fixed once asked): 2 AVX512, 1 AVX2, 0 neither.
inline int cpu_capability_level() {
  static const int level = [] {
    const std::string capability = at::get_cpu_capability();
    return capability == "AVX512" ? 2 : capability == "AVX2" ? 1 : 0;
  }();
  return level;
}

// Picks the kernel compiled for that capability.
template <typename Fn>
Fn pick_cpu_kernel(Fn default_kernel, Fn avx2_kernel, Fn avx512_kernel) {
  const int level = cpu_capability_level();
  return level == 2 ? avx512_kernel : level == 1 ? avx2_kernel : default_kernel;
}

#define MEMC_CPU_KERNEL(name) ::memc::pick_cpu_kernel(&::memc::DEFAULT::name, &::memc::AVX2::name, &::memc::AVX512::name)
#else
#define MEMC_FOR_EACH_CPU_CAPABILITY(m) m(DEFAULT)
#define MEMC_CPU_KERNEL(name) (&::memc::DEFAULT::name)
#endif

}  // namespace memc
