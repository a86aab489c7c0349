// weight_exchange.h: the quantize job's WeightExchange (loftq/job_share.h) over a Comm: a finished
// weight travels to rank 0 as one framed message (an 8-byte length, then the body: the result's
// numbers, the step curve, codes one byte each, block scales, the LoRA factors B, A and S). Q is
// not sent: rank 0 dequantizes the codes, which gives Q's exact bits (quant/quantizer.h).
// Per weight that is m n + 4 (m n / block + r (m + n)) bytes, about a quarter of the fp32 weight.
#pragma once
#include <memory>
#include <string>

#include "dist/comm.h"
#include "loftq/job_share.h"

namespace loftq {

std::shared_ptr<WeightExchange> make_weight_exchange(Comm& comm);

// The body's encoding, exposed for tests (a round trip must give the same bits).
std::string encode_weight(int weight, const WeightResult& r, const Decomposition& d);
int decode_weight(const std::string& bytes, WeightResult& r, Decomposition& d);

}  // namespace loftq
