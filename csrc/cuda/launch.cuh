// Launch helpers shared by the CUDA kernels of every op.
#pragma once

#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace memc {

constexpr int kThreadsPerBlock = 256;

// Adds into memory that concurrent threads also add to. The targets are opmath (float or
// double) buffers, so these are native atomics also for half-precision inputs.
struct AtomicAdd {
  template <typename T>
  __device__ __forceinline__ void operator()(T* target, T value) const {
    gpuAtomicAdd(target, value);
  }
};

// Blocks for `threads` threads of work, capped at a few waves: grid-stride loops cover the rest.
inline int64_t blocks_for(int64_t threads) {
  const int64_t max_blocks = int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  return std::max<int64_t>(1, std::min<int64_t>((threads + kThreadsPerBlock - 1) / kThreadsPerBlock, max_blocks));
}

__device__ __forceinline__ int64_t first_thread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t thread_stride() { return int64_t(blockDim.x) * gridDim.x; }

}  // namespace memc
