// run_outputs.h: what a fine-tune leaves in its output folder when it stops early (an error, a
// cancel). The rule: the train checkpoint (OUT/checkpoint/, written atomically) stays when one is
// on disk, because resuming needs it; metrics.jsonl is cut back to that checkpoint's step (the
// lines a resumed run would keep anyway); the adapter and sample that this run wrote are removed,
// so that nothing looks like a finished run (resuming writes them again at its end, also with the
// same step count: the checkpoint holds the adapter's values). Without a checkpoint nothing of
// the run stays: metrics.jsonl goes, and the output folder too when the run created it and it is
// empty. Files the run did not write are never touched. A completed run calls finished() and
// keeps everything.
#pragma once
#include <string>

namespace loftq {

class RunOutputs {
public:
    // out: the output folder (absolute); checkpoint_step: the step of the checkpoint already in
    // it (a resume), -1 when none.
    RunOutputs(std::string out, int checkpoint_step);
    // Creates the output folder, noting whether it existed. Throws loftq::Error naming it.
    void create_folder();
    // Progress, as the files land (each after its write succeeded).
    void metrics_written(const std::string& path) { metrics_ = path; }
    void checkpoint_saved(int step) { checkpoint_step_ = step; }
    void adapter_written(const std::string& dir) { adapter_ = dir; }
    void sample_written(const std::string& path) { sample_ = path; }
    void finished() { finished_ = true; }
    bool is_finished() const { return finished_; }
    // The run stopped early: applies the rule above (best effort, never throws: a problem here
    // must not hide the error that stopped the run) and returns one sentence saying what stays.
    std::string stopped(int step) noexcept;

private:
    std::string out_, metrics_, adapter_, sample_;
    int checkpoint_step_ = -1;
    bool created_ = false, checkpoint_dir_existed_ = false, finished_ = false;
};

}  // namespace loftq
