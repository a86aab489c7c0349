// expect_error.h: EXPECT_ERROR(expr, "needle", ...) for Qt Test: expr must throw loftq::Error whose
// message holds every needle (the file, the tensor, the reason); the message is shown on failure.
#pragma once
#include <QtTest>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace loftq::test {

// Runs fn; true when it throws loftq::Error whose message contains every needle. The message is
// put in `msg` for diagnostics.
inline bool throws_error(const std::function<void()>& fn, const std::vector<std::string>& needles, std::string& msg) {
    try {
        fn();
        msg = "(no exception)";
        return false;
    } catch (const Error& e) {
        msg = e.what();
        for (const auto& n : needles)
            if (msg.find(n) == std::string::npos) return false;
        return true;
    } catch (const std::exception& e) {
        msg = std::string("(not a loftq::Error) ") + e.what();
        return false;
    }
}

}  // namespace loftq::test

#define EXPECT_ERROR(expr, ...)                                                              \
    do {                                                                                     \
        std::string msg_;                                                                    \
        bool ok_ = loftq::test::throws_error([&] { expr; }, {__VA_ARGS__}, msg_);            \
        QVERIFY2(ok_, (std::string(#expr) + " -> " + msg_).c_str());                        \
    } while (0)
