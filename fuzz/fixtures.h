// fixtures.h: the valid files some targets fuzz one part of (a shard index needs its shards, a
// config.json its weights, an export's JSON its export). Made once per process in scratch_dir()
// from engine writers, with the same shapes as fuzz/make_seeds.sh uses for the seed corpora.
#pragma once
#include <string>

namespace loftq::fuzz {

// A 1-layer LLaMA (hidden 16, MLP 32, 2 heads, 1 KV head, vocab 32, bf16), written by the
// synthetic-model writer into a fresh folder `name` under scratch_dir(); sharded at
// max_shard_bytes when non-zero. Returns the folder.
std::string tiny_model(const std::string& name, unsigned long long max_shard_bytes = 0);
// An HF-layout LoftQ export of tiny_model (nf4, block 16, rank 2, one step) in folder `name`.
std::string tiny_export(const std::string& name);
// The demo model's llama2.c tokenizer shipped in resources/ (512 pieces).
std::string demo_tokenizer();

}  // namespace loftq::fuzz
