//! ketch consensus: openraft on glommio, log storage on the WAL, state machine over MVCC.

pub mod runtime;

pub use runtime::GlommioRuntime;
