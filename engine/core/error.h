// error.h: the one exception type the engine throws for bad input or failed I/O.
// Every message names the file and, where there is one, the tensor, so that a user can act on
// it ("model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data offsets [..] out of
// file bounds (file is N bytes)"). A library never exits; callers catch loftq::Error.
#pragma once
#include <stdexcept>
#include <string>

namespace loftq {

struct Error : std::runtime_error {
    std::string file;    // file the problem is in ("" when none)
    std::string tensor;  // tensor name ("" when none)
    Error(std::string file_, std::string tensor_, const std::string& what_)
        : std::runtime_error(compose(file_, tensor_, what_)), file(std::move(file_)),
          tensor(std::move(tensor_)) {}
    explicit Error(const std::string& what_) : std::runtime_error(what_) {}

    static std::string compose(const std::string& f, const std::string& t, const std::string& w) {
        std::string s;
        if (!f.empty()) s += f + ": ";
        if (!t.empty()) s += "tensor '" + t + "': ";
        return s + w;
    }
};

// Thrown by jobs when the cancel token was set; carries no file.
struct Cancelled : std::runtime_error {
    Cancelled() : std::runtime_error("cancelled") {}
};

}  // namespace loftq
