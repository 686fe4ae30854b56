//! ketch write-ahead log: segments, CRC-framed records, group-commit fsync on io_uring
