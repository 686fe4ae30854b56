//! ketch MVCC store: etcd's revision model in memory, no I/O
