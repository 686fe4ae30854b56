//! Linearizability and watch-guarantee checkers for recorded histories.
