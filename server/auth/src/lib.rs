//! etcd's auth store (issue 7): users, roles, key-range permissions and tokens, kept as a pure
//! state machine that raft entries drive. Being written; nothing uses it yet.
