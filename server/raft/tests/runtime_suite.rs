//! Runs openraft's own `AsyncRuntime` conformance suite (`openraft_rt::testing::Suite`:
//! spawn, timers, select, channels, mutex, task-locals) against `GlommioRuntime`.

use ketch_raft::GlommioRuntime;
use openraft_rt::testing::Suite;

#[test]
fn openraft_runtime_suite_passes_on_glommio() {
    Suite::<GlommioRuntime>::test_all();
}
