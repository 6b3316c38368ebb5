// Everything a family's fused kernel includes, by subject:
//   base.h      index type, vectorization pragma, row-parallel loop
//   gemm.h      packed and unpacked matrix products, weight packing, weight-gradient products
//   fastmath.h  exp/sigmoid/tanh, layer-norm row statistics
//   sequence.h  sequence bookkeeping (masks, zoneout keeps, carry, gradients of states)
#pragma once

#include "base.h"
#include "fastmath.h"
#include "gemm.h"
#include "sequence.h"
