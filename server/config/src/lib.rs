//! ketch configuration: etcd's flags, ETCD_* environment, YAML config file, member and cluster IDs
