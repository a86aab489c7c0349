// comm_threads.cpp: see comm_threads.h. One mailbox per rank under one mutex; waits poll the
// rank's cancel token every few milliseconds.
#include "dist/comm_threads.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace loftq {

struct ThreadMessage {
    int from;
    CommTag tag;
    std::string bytes;
};

class ThreadWorld {
public:
    explicit ThreadWorld(int n) : n(n), boxes(size_t(n)), tokens(size_t(n), nullptr) {}
    const int n;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::deque<ThreadMessage>> boxes;
    std::vector<CancelToken*> tokens;
    std::string abort_reason;
    int finished = 0;
};

namespace {

class ThreadComm final : public Comm {
public:
    ThreadComm(std::shared_ptr<ThreadWorld> w, int rank) : w_(std::move(w)), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return w_->n; }
    void set_cancel(CancelToken* token) override {
        std::lock_guard<std::mutex> lock(w_->mu);
        w_->tokens[size_t(rank_)] = token;
        if (token && !w_->abort_reason.empty()) token->cancel();
    }
    void abort_all(const std::string& why) override {
        std::lock_guard<std::mutex> lock(w_->mu);
        if (w_->abort_reason.empty()) w_->abort_reason = why;
        for (auto* t : w_->tokens)
            if (t) t->cancel();
        w_->cv.notify_all();
    }
    std::string abort_reason() const override {
        std::lock_guard<std::mutex> lock(w_->mu);
        return w_->abort_reason;
    }
    void send(int to, CommTag tag, const void* data, size_t bytes) override {
        send(to, tag, std::string(static_cast<const char*>(data), bytes));
    }
    void send(int to, CommTag tag, std::string&& bytes) override {
        std::lock_guard<std::mutex> lock(w_->mu);
        if (!w_->abort_reason.empty()) throw Cancelled();
        w_->boxes[size_t(to)].push_back({rank_, tag, std::move(bytes)});
        w_->cv.notify_all();
    }
    void recv(int from, CommTag tag, void* data, size_t bytes) override {
        ThreadMessage m = take(from, tag);
        if (m.bytes.size() != bytes)
            throw Error("rank " + std::to_string(rank_) + ": a message from rank " + std::to_string(from) + " has " +
                        std::to_string(m.bytes.size()) + " bytes, expected " + std::to_string(bytes));
        std::memcpy(data, m.bytes.data(), bytes);
    }
    std::string recv_any(CommTag tag, int* from) override {
        ThreadMessage m = take(-1, tag);
        if (from) *from = m.from;
        return std::move(m.bytes);
    }
    void sendrecv(int to, const void* sdata, size_t sbytes, int from, void* rdata, size_t rbytes) override {
        send(to, CommTag::Ring, sdata, sbytes);
        recv(from, CommTag::Ring, rdata, rbytes);
    }
    bool finish(double timeout_s) override {
        std::unique_lock<std::mutex> lock(w_->mu);
        ++w_->finished;
        w_->cv.notify_all();
        return w_->cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return w_->finished >= w_->n; });
    }

private:
    std::shared_ptr<ThreadWorld> w_;
    int rank_;

    ThreadMessage take(int from, CommTag tag) {
        std::unique_lock<std::mutex> lock(w_->mu);
        auto& box = w_->boxes[size_t(rank_)];
        for (;;) {
            for (auto it = box.begin(); it != box.end(); ++it)
                if (it->tag == tag && (from < 0 || it->from == from)) {
                    ThreadMessage m = std::move(*it);
                    box.erase(it);
                    return m;
                }
            if (!w_->abort_reason.empty()) throw Cancelled();
            const CancelToken* t = w_->tokens[size_t(rank_)];
            if (t && t->cancelled()) throw Cancelled();
            w_->cv.wait_for(lock, std::chrono::milliseconds(5));
        }
    }
};

}  // namespace

std::shared_ptr<ThreadWorld> make_thread_world(int n) { return std::make_shared<ThreadWorld>(n); }
std::unique_ptr<Comm> thread_comm(const std::shared_ptr<ThreadWorld>& world, int rank) {
    return std::make_unique<ThreadComm>(world, rank);
}

}  // namespace loftq
