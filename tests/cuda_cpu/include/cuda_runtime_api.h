// The runtime API header of the CPU stand-in (see cuda_runtime.h).
#pragma once
#include "cuda_runtime.h"
