// error.h: the one exception type the engine throws for bad input or failed I/O.
// Every message names the file and, where there is one, the tensor, so that a user can act on
// it ("model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data offsets [..] out of
// file bounds (file is N bytes)"). A library never exits; callers catch loftq::Error.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

namespace loftq {

struct Error : std::runtime_error {
    std::string file;    // file the problem is in ("" when none)
    std::string tensor;  // tensor name ("" when none)
    std::string detail;  // the message without the file and tensor
    Error(std::string file_, std::string tensor_, const std::string& what_)
        : std::runtime_error(compose(file_, tensor_, what_)), file(std::move(file_)),
          tensor(std::move(tensor_)), detail(what_) {}
    explicit Error(const std::string& what_) : std::runtime_error(what_), detail(what_) {}

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

// Inside a catch block of work on one tensor: rethrows the exception in flight so that it names
// the tensor (and the file), where it did not. loftq::Cancelled and errors that already name a
// tensor pass unchanged; loftq::Error keeps its file; out of memory and other std::exceptions
// (a LAPACK "did not converge", a library's own error) become loftq::Error with their message.
[[noreturn]] inline void rethrow_naming(const std::string& file, const std::string& tensor) {
    try {
        throw;
    } catch (const Cancelled&) {
        throw;
    } catch (const Error& e) {
        if (!e.tensor.empty() || tensor.empty()) throw;
        throw Error(e.file.empty() ? file : e.file, tensor, e.detail);
    } catch (const std::bad_alloc&) {
        throw Error(file, tensor, "out of memory");
    } catch (const std::exception& e) {
        throw Error(file, tensor, e.what());
    }
}

}  // namespace loftq
