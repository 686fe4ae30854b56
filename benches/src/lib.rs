//! criterion microbenchmarks of ketch's hot paths; the benches live in benches/benches/.
