//! The consistency-group contract on real etcd and real loop mounts: agents
//! as separate processes standing for hosts, each with its own filesystem
//! and state directory. Run as root; nothing here skips.

#[path = "../../../tests/integration/support.rs"]
#[allow(unused_macros, unused_imports)]
mod support;

mod barrier;
mod certificates;
mod clocks;
mod cut_off;
mod etcd_cluster;
mod failures;
mod faults;
mod full_etcd;
mod harness;
mod holds;
mod security;
mod tls;
