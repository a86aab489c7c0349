// comm_mpi.cpp: see comm_mpi.h.
#include "dist/comm_mpi.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

#ifdef LOFTQ_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iterator>
#include <chrono>
#include <list>
#include <mutex>
#include <thread>
#include <vector>
#endif

namespace loftq {

bool mpi_built() {
#ifdef LOFTQ_HAVE_MPI
    return true;
#else
    return false;
#endif
}

int mpi_launched_size() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
        const char* s = std::getenv(v);
        if (s && *s) return std::max(1, std::atoi(s));
    }
    if (std::getenv("PMIX_RANK")) return 1;  // PMIx without a size variable: MPI_Comm_size tells
    return 0;
}

#ifndef LOFTQ_HAVE_MPI

std::unique_ptr<Comm> mpi_comm() {
    throw Error("this loftq was built without MPI (Open MPI's libopenmpi-dev was not found at build time), but a launcher "
                "started it as one rank of a job; rebuild with libopenmpi-dev, or run it without mpirun");
}

#else

namespace {

constexpr size_t kPiece = size_t(1) << 30;  // largest single MPI message (counts are ints)

class MpiComm final : public Comm {
public:
    MpiComm() {
        int provided = 0;
        if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            throw Error("MPI_Init_thread failed");
        if (provided < MPI_THREAD_SERIALIZED)
            throw Error("this MPI library does not offer MPI_THREAD_SERIALIZED, which loftq needs (its job threads send)");
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        watcher_ = std::thread([this] { watch(); });
    }
    ~MpiComm() override {
        stop_watch();
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void set_cancel(CancelToken* token) override {
        token_.store(token);
        if (token && aborted_.load()) token->cancel();
    }
    void abort_all(const std::string& why) override {
        {
            std::lock_guard<std::mutex> lock(reason_mu_);
            if (!reason_.empty()) {  // someone aborted first: just stop here
                cancel_local();
                return;
            }
            reason_ = why;
        }
        aborted_.store(true);
        cancel_local();
        std::lock_guard<std::mutex> lock(mu_);
        for (int q = 0; q < size_; ++q)
            if (q != rank_) post_send(q, CommTag::Abort, why.data(), why.size());
    }
    std::string abort_reason() const override {
        std::lock_guard<std::mutex> lock(reason_mu_);
        return reason_;
    }

    void send(int to, CommTag tag, const void* data, size_t bytes) override {
        const char* p = static_cast<const char*>(data);
        size_t off = 0;
        do {
            const size_t n = std::min(kPiece, bytes - off);
            std::list<Pending>::iterator s;
            {
                std::lock_guard<std::mutex> lock(mu_);
                s = post_send(to, tag, p + off, n);
            }
            wait_send(s, [&] { return test(&s->req); });
            off += n;
        } while (off < bytes);
    }
    void send(int to, CommTag tag, std::string&& bytes) override {
        if (bytes.size() > kPiece) return send(to, tag, bytes.data(), bytes.size());
        std::list<Pending>::iterator s;
        {
            std::lock_guard<std::mutex> lock(mu_);
            s = post_send(to, tag, std::move(bytes));
        }
        wait_send(s, [&] { return test(&s->req); });
    }
    void recv(int from, CommTag tag, void* data, size_t bytes) override {
        char* p = static_cast<char*>(data);
        size_t off = 0;
        do {
            const size_t n = std::min(kPiece, bytes - off);
            MPI_Request req;
            MPI_Status st;
            {
                std::lock_guard<std::mutex> lock(mu_);
                check(MPI_Irecv(p + off, int(n), MPI_BYTE, from, int(tag), MPI_COMM_WORLD, &req), "MPI_Irecv");
            }
            try {
                wait([&] { return test(&req, &st); });
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu_);
                MPI_Cancel(&req);
                MPI_Wait(&req, MPI_STATUS_IGNORE);
                throw;
            }
            int got = 0;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (size_t(got) != n)
                throw Error("rank " + std::to_string(rank_) + ": a message from rank " + std::to_string(from) + " has " +
                            std::to_string(got) + " bytes, expected " + std::to_string(n));
            off += n;
        } while (off < bytes);
    }
    std::string recv_any(CommTag tag, int* from) override {
        MPI_Status st;
        int flag = 0;
        wait([&] {
            check(MPI_Iprobe(MPI_ANY_SOURCE, int(tag), MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
            return flag != 0;
        });
        std::lock_guard<std::mutex> lock(mu_);  // the probed message is ours: only this thread takes `tag` from anyone
        int n = 0;
        MPI_Get_count(&st, MPI_BYTE, &n);
        std::string bytes(size_t(n), '\0');
        check(MPI_Recv(bytes.data(), n, MPI_BYTE, st.MPI_SOURCE, int(tag), MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
        if (from) *from = st.MPI_SOURCE;
        return bytes;
    }
    void sendrecv(int to, const void* sdata, size_t sbytes, int from, void* rdata, size_t rbytes) override {
        if (sbytes > kPiece || rbytes > kPiece) throw Error("sendrecv: more than 1 GiB in one ring step");
        MPI_Request rreq;
        std::list<Pending>::iterator s;
        {
            std::lock_guard<std::mutex> lock(mu_);
            check(MPI_Irecv(rdata, int(rbytes), MPI_BYTE, from, int(CommTag::Ring), MPI_COMM_WORLD, &rreq), "MPI_Irecv");
            s = post_send(to, CommTag::Ring, sdata, sbytes, &ring_stage_);
        }
        bool rdone = false, sdone = false;
        try {
            wait_send(s, [&] {
                if (!rdone) rdone = test(&rreq);
                if (!sdone) sdone = test(&s->req);
                return rdone && sdone;
            });
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu_);
            if (!rdone) {
                MPI_Cancel(&rreq);
                MPI_Wait(&rreq, MPI_STATUS_IGNORE);
            }
            throw;
        }
    }

    bool finish(double timeout_s) override {
        MPI_Request bar;
        {
            std::lock_guard<std::mutex> lock(mu_);
            MPI_Ibarrier(MPI_COMM_WORLD, &bar);
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto late = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s; };
        bool done = false;
        while (!done) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                int f = 0;
                MPI_Test(&bar, &f, MPI_STATUS_IGNORE);
                done = f != 0;
                drain();       // a stopped run's messages still in flight: take them, so their senders finish
                reap_sends();
            }
            if (!done) {
                if (late()) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        }
        stop_watch();
        if (done) {  // every rank is here: what is still queued to send completes
            for (;;) {
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    drain();
                    reap_sends();
                    if (sends_.empty()) break;
                }
                if (late()) { done = false; break; }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        }
        if (!done) {
            std::fprintf(stderr, "loftq: rank %d: not every rank finished within %.0f s; ending the job\n", rank_, timeout_s);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        MPI_Finalize();
        return true;
    }

private:
    struct Pending {
        MPI_Request req;
        std::string bytes;  // owned copy: the request may outlive the caller's buffer
        bool waited;        // a caller waits on it (and erases it); else reap_sends drops it when done
        std::string* reuse; // where `bytes` goes back when the waiter is done (or null)
    };
    int rank_ = 0, size_ = 1;
    std::mutex mu_;                 // every MPI call
    mutable std::mutex reason_mu_;
    std::string reason_;
    std::atomic<bool> aborted_{false}, stop_{false};
    std::atomic<CancelToken*> token_{nullptr};
    std::list<Pending> sends_;      // under mu_
    std::string ring_stage_;        // sendrecv's send buffer, reused (post_send)
    std::thread watcher_;

    static void check(int rc, const char* what) {
        if (rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            throw Error(std::string(what) + " failed: " + std::string(text, size_t(len)));
        }
    }
    void cancel_local() {
        if (CancelToken* t = token_.load()) t->cancel();
    }
    // Under mu_. The entry stays valid (std::list) until its waiter erases it.
    // `reuse`: a buffer kept for this kind of send (the ring's, every step): its storage moves
    // into the entry and back when the send completes, so a step costs no page faults; an entry
    // abandoned by an abort keeps it (the next send then makes a new one).
    std::list<Pending>::iterator post_send(int to, CommTag tag, const void* data, size_t n, std::string* reuse = nullptr) {
        std::string bytes;
        if (reuse) bytes.swap(*reuse);
        bytes.assign(static_cast<const char*>(data), n);
        return post_send(to, tag, std::move(bytes), reuse);
    }
    // Under mu_: sends `bytes`, which the entry owns (at most kPiece).
    std::list<Pending>::iterator post_send(int to, CommTag tag, std::string&& bytes, std::string* reuse = nullptr) {
        const size_t n = bytes.size();
        sends_.push_back({MPI_REQUEST_NULL, std::move(bytes), true, reuse});
        auto it = std::prev(sends_.end());
        check(MPI_Isend(it->bytes.data(), int(n), MPI_BYTE, to, int(tag), MPI_COMM_WORLD, &it->req), "MPI_Isend");
        if (tag == CommTag::Abort) it->waited = false, it->reuse = nullptr;  // nobody waits for an abort: reaped when done
        return it;
    }
    // Waits for `ready` (which tests the send `s`), then drops `s`; on a throw leaves it to reap_sends.
    template <class F>
    void wait_send(std::list<Pending>::iterator s, F ready) {
        try {
            wait(ready);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu_);
            s->waited = false;
            s->reuse = nullptr;  // abandoned: keeps its buffer until it completes
            throw;
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (s->reuse) s->reuse->swap(s->bytes);
        sends_.erase(s);
    }
    // Under mu_: drops the completed sends that nobody waits for (abandoned or already seen done).
    void reap_sends() {
        for (auto it = sends_.begin(); it != sends_.end();) {
            int f = 0;
            if (it->waited) { ++it; continue; }
            if (it->req != MPI_REQUEST_NULL) MPI_Test(&it->req, &f, MPI_STATUS_IGNORE);
            if (it->req == MPI_REQUEST_NULL) it = sends_.erase(it);
            else ++it;
        }
    }
    // Under mu_: receives and drops whatever data messages are waiting (aborts are the watcher's).
    void drain() {
        for (;;) {
            int f = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &f, &st);
            if (!f) return;
            int n = 0;
            MPI_Get_count(&st, MPI_BYTE, &n);
            std::string sink(size_t(std::max(n, 1)), '\0');
            MPI_Recv(sink.data(), n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (st.MPI_TAG == int(CommTag::Abort)) note_abort(st.MPI_SOURCE, sink.substr(0, size_t(n)));
        }
    }
    // A request's completion, under mu_ (the wait loop's test).
    bool test(MPI_Request* req, MPI_Status* st = MPI_STATUS_IGNORE) {
        if (*req == MPI_REQUEST_NULL) return true;
        int f = 0;
        check(MPI_Test(req, &f, st), "MPI_Test");
        return f != 0;
    }
    // Polls `ready` under mu_ until it holds; throws Cancelled once this rank is cancelled.
    // MPI moves a large message only while it is polled (each MPI_Test progresses it), so the
    // first 200 ms poll back to back (yielding the core: runs may be oversubscribed); a wait that
    // lasts longer is waiting for a peer's work, and polls every 0.2 ms.
    template <class F>
    void wait(F ready) {
        const auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                if (ready()) {
                    reap_sends();
                    return;
                }
            }
            const CancelToken* t = token_.load();
            if (aborted_.load() || (t && t->cancelled())) throw Cancelled();
            if (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200))
                std::this_thread::yield();
            else
                std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    void note_abort(int from, const std::string& why) {
        {
            std::lock_guard<std::mutex> lock(reason_mu_);
            if (reason_.empty()) reason_ = why.empty() ? "rank " + std::to_string(from) + " stopped" : why;
        }
        aborted_.store(true);
        cancel_local();
    }
    void watch() {
        while (!stop_.load()) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                int f = 0;
                MPI_Status st;
                MPI_Iprobe(MPI_ANY_SOURCE, int(CommTag::Abort), MPI_COMM_WORLD, &f, &st);
                if (f) {
                    int n = 0;
                    MPI_Get_count(&st, MPI_BYTE, &n);
                    std::string why(size_t(std::max(n, 1)), '\0');
                    MPI_Recv(why.data(), n, MPI_BYTE, st.MPI_SOURCE, int(CommTag::Abort), MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    why.resize(size_t(n));
                    note_abort(st.MPI_SOURCE, why);
                }
                reap_sends();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }
    void stop_watch() {
        stop_.store(true);
        if (watcher_.joinable()) watcher_.join();
    }
};

}  // namespace

std::unique_ptr<Comm> mpi_comm() { return std::make_unique<MpiComm>(); }

#endif

}  // namespace loftq
