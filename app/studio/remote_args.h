// remote_args.h: the `loftq finetune` command line that runs a TrainOptions as run_finetune
// would, for runs started on another machine or through a launcher (dist/launcher.h): the Studio
// builds its options in the form, the target runs the CLI. Every field the form sets is passed
// (numbers at full precision), so a launched run trains what an in-process one would, bit for bit
// on the same machine (test_run_on). A plan start names its plan file (`plan_file`, as the target
// sees it: the Fine-tune tab sends it with the run and names it relatively).
#pragma once
#include <string>
#include <vector>

#include "train/trainer.h"

namespace studio {

// Arguments after the program name: "finetune", MODEL, --data ..., --out `out`, --events is added
// by the launcher. Throws loftq::Error for a start the CLI cannot express (a plan without a file).
std::vector<std::string> finetune_cli_args(const loftq::TrainOptions& o, const std::string& out, const std::string& plan_file = {});

}  // namespace studio
