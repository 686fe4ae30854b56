//! A fault-injecting TCP proxy placed between cluster members (blackhole, delay, drop).
