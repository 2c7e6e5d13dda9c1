// Row conversions between the half types and float32, vectorised per CPU capability
// (csrc/cpu/vectorized/convert_rows.cpp; see cpu/capability.h). Kernels that read half-precision
// rows into float32 scratch, and write them back, call them once per row rather than converting
// element by element in code built without F16C (where a float16 conversion is a dozen integer
// instructions). The values are exactly those of static_cast: half to float is exact, float to
// half rounds to nearest even.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "cpu/capability.h"

namespace memc {

//   half_row_to_float: target[i] = float(source[i * stride]) for i < count.
//   float_row_to_half: target[i * stride] = scalar_t(source[i]) for i < count.
#define MEMC_DECLARE_ROW_CONVERSIONS(CAPABILITY)                                                          \
  namespace CAPABILITY {                                                                                 \
  template <typename scalar_t>                                                                           \
  void half_row_to_float(const scalar_t* source, int64_t stride, float* target, int64_t count);          \
  template <typename scalar_t>                                                                           \
  void float_row_to_half(const float* source, scalar_t* target, int64_t stride, int64_t count);          \
  }

MEMC_FOR_EACH_CPU_CAPABILITY(MEMC_DECLARE_ROW_CONVERSIONS)

#undef MEMC_DECLARE_ROW_CONVERSIONS

}  // namespace memc
