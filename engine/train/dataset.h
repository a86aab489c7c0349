// dataset.h: fine-tuning examples from files, tokenized, as (tokens, targets) rows of length T.
//   plain text (.txt or anything not JSONL): tokenized as one stream (BOS at each document
//     start, documents split at blank lines... see the .cpp), chunked into T+1 windows;
//   JSONL: one object per line with "text" (loss on all), "question"/"answer" (GSM8K; loss on
//     the answer only), or "instruction"/"input"/"output" (Alpaca; loss on the output only).
// targets[t] = next token, or -1 where no loss is taken (prompt, padding). Rows longer than T
// are truncated (prompt kept), shorter ones padded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/tokenizer.h"

namespace loftq {

struct Example {
    std::vector<int> tokens;    // T
    std::vector<int> targets;   // T, -1 = not scored
};

struct DatasetOptions {
    int seq = 128;              // T
    double eval_fraction = 0.0; // held-out share when no separate eval file (0..0.5)
    uint64_t seed = 0;          // shuffling and the split
    int64_t max_examples = 0;   // 0 = all
};

struct Dataset {
    std::vector<Example> train, eval;
    std::string format;          // "text", "jsonl-text", "jsonl-qa", "jsonl-instruct"
    int64_t scored_tokens = 0;   // in train
    std::vector<std::string> warnings;   // "file: line N: ..." (dropped/truncated examples)
};

// Throws loftq::Error naming the file and line (bad JSON, missing fields, empty file).
Dataset load_dataset(const std::string& path, const Tokenizer& tok, const DatasetOptions& opt);
// Examples of a second file, all for evaluation (e.g. --eval-data).
// max_examples applies; eval_fraction is ignored. Warnings are appended to `warnings` if given.
std::vector<Example> load_examples(const std::string& path, const Tokenizer& tok, const DatasetOptions& opt,
                                   std::vector<std::string>* warnings = nullptr);

}  // namespace loftq
