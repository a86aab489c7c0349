// train_checkpoint.h: the resumable state of a fine-tuning run, OUT/checkpoint/:
//   state.safetensors: every LoRA tensor under its PEFT key, and the AdamW moments under
//     "adamw_m.<key>" / "adamw_v.<key>" (F32); __metadata__ "format" = "loftq-train-checkpoint",
//     "version" = "1", "state" = the JSON below. One file, renamed into place in one step, so a
//     crash leaves either the previous checkpoint or the new one, never a mix;
//   options.json: a readable copy of the state JSON (written first; state.safetensors decides).
// State JSON: step (updates done), adam_t, cursor (train examples consumed: epoch = cursor / n,
// position = cursor % n; the epoch order is a pure function of (seed, epoch), so the cursor is
// the whole data/RNG state), tokens, seconds, the eval losses so far, n_train, and the run's
// options. Loading checks format, version, every tensor's presence, shape, dtype and finiteness,
// and names the file and tensor when something is off.
// Device: the functions read and write host memory (the model's trainable() and an AdamW's
// moments); a CUDA run brings its device state to the host first and pushes it back after a load
// (train/optimizer.h sync_to_host / sync_to_device), so a checkpoint resumes on either device.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/adamw.h"
#include "train/trainer.h"

namespace loftq {

struct TrainState {
    int step = 0;
    int64_t cursor = 0;
    int64_t tokens = 0;        // training tokens processed (B x T per micro-batch)
    double seconds = 0;        // training wall time so far
    double first_eval_loss = std::numeric_limits<double>::quiet_NaN();
    double last_eval_loss = std::numeric_limits<double>::quiet_NaN();
    double last_train_loss = std::numeric_limits<double>::quiet_NaN();
    int64_t n_train = 0;       // train examples in the dataset when saved
    nlohmann::ordered_json options;  // train_options_json of the run that saved it
};

constexpr const char* kCheckpointFile = "state.safetensors";

nlohmann::ordered_json train_options_json(const TrainOptions& o);
bool has_train_checkpoint(const std::string& dir);

// Writes dir/{options.json, state.safetensors} atomically (StagedOutput). Returns final paths.
std::vector<std::string> save_train_checkpoint(const std::string& dir, const std::vector<TrainableTensor>& params,
                                               const AdamW& opt, const TrainState& st);
// The state JSON of dir/state.safetensors (no tensors read): to check options before loading a model.
TrainState read_train_state(const std::string& dir);
// Reads dir/state.safetensors into the params' values and the optimizer's moments and t.
TrainState load_train_checkpoint(const std::string& dir, const std::vector<TrainableTensor>& params, AdamW& opt);
// Throws loftq::Error naming `file` when a setting that shapes the run (model init, quantizer,
// rank, seeds, batch, seq, accumulation) differs between the checkpoint and this run. Returns
// notes on settings that differ but may (steps, lr, data path, ...).
std::vector<std::string> check_resume_compatible(const std::string& file, const nlohmann::json& saved,
                                                 const TrainOptions& now);

}  // namespace loftq
