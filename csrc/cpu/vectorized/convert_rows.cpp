// Row conversions between the half types and float32 (cpu/convert_rows.h), compiled once per CPU
// capability: whole stride-1 vectors with at::vec, the rest (tails, strided rows) element by
// element, which gives the same values.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "cpu/convert_rows.h"

namespace memc {
namespace CPU_CAPABILITY {

using at::vec::Vectorized;

template <typename scalar_t>
void half_row_to_float(const scalar_t* source, int64_t stride, float* target, int64_t count) {
  using V = Vectorized<float>;
  int64_t i = 0;
  if (stride == 1) {
    for (; i + V::size() <= count; i += V::size()) {
      V values;
      at::vec::load_to_float(source + i, values);
      values.store(target + i);
    }
  }
  for (; i < count; ++i) {
    target[i] = static_cast<float>(source[i * stride]);
  }
}

template <typename scalar_t>
void float_row_to_half(const float* source, scalar_t* target, int64_t stride, int64_t count) {
  using V = Vectorized<float>;
  int64_t i = 0;
  if (stride == 1) {
    for (; i + V::size() <= count; i += V::size()) {
      const V values = V::loadu(source + i);
      at::vec::convert_from_float<scalar_t>(values, values).store(target + i, V::size());
    }
  }
  for (; i < count; ++i) {
    target[i * stride] = static_cast<scalar_t>(source[i]);
  }
}

template void half_row_to_float<c10::Half>(const c10::Half*, int64_t, float*, int64_t);
template void half_row_to_float<c10::BFloat16>(const c10::BFloat16*, int64_t, float*, int64_t);
template void float_row_to_half<c10::Half>(const float*, c10::Half*, int64_t, int64_t);
template void float_row_to_half<c10::BFloat16>(const float*, c10::BFloat16*, int64_t, int64_t);

}  // namespace CPU_CAPABILITY
}  // namespace memc
